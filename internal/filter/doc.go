// Package filter holds the syncer's table selection rules, with DM's
// configuration shapes and semantics:
//
//   - BlockAllowList (DM's block-allow-list): which schemas and tables are
//     replicated at all;
//   - EventFilter (DM's binlog event filter): which events on them are
//     skipped, by type and by DDL text;
//   - Router (DM's routes): the downstream names, merging shards.
//
// Rules are plain structs with json, toml and yaml tags, as they appear in
// task files; the New* constructors check them and return every problem at
// once. The built values are immutable and safe for concurrent use.
//
// Schema and table patterns use wildcards (see the pattern type: *, ?,
// [...]), and in block/allow lists also ~regular expressions. Names are
// matched case-insensitively unless the rules say otherwise, as in DM.
package filter
