package dmworker

import "encoding/json"

// The status types hold their last error as an error, which encoding/json
// would write as {}: their MarshalJSON writes it as its text instead
// ("LastError": "..."; left out when nil), every other field as usual.

// errorText is err's message, "" for nil.
func errorText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// MarshalJSON writes the status with LastError as text.
func (s SubTaskStatus) MarshalJSON() ([]byte, error) {
	type plain SubTaskStatus
	return json.Marshal(struct {
		plain
		LastError string `json:",omitempty"`
	}{plain(s), errorText(s.LastError)})
}

// MarshalJSON writes the status with LastError as text.
func (s SyncerStatus) MarshalJSON() ([]byte, error) {
	type plain SyncerStatus
	return json.Marshal(struct {
		plain
		LastError string `json:",omitempty"`
	}{plain(s), errorText(s.LastError)})
}

// MarshalJSON writes the status with LastError as text.
func (s SnapshotStatus) MarshalJSON() ([]byte, error) {
	type plain SnapshotStatus
	return json.Marshal(struct {
		plain
		LastError string `json:",omitempty"`
	}{plain(s), errorText(s.LastError)})
}

// MarshalJSON writes the status with LastError as text.
func (s RelayStatus) MarshalJSON() ([]byte, error) {
	type plain RelayStatus
	return json.Marshal(struct {
		plain
		LastError string `json:",omitempty"`
	}{plain(s), errorText(s.LastError)})
}
