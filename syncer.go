package dmworker

// This file will hold Syncer: filtering, routing and applying row and DDL
// events to a host-supplied Sink, with checkpoints and safe replay. It is not
// built yet. It will read events through streamer.Reader, the interface that
// streamer.RemoteReader already implements.
