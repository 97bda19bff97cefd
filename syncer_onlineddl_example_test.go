package dmworker_test

import (
	"encoding/json"
	"fmt"
	"log"

	"github.com/BurntSushi/toml"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/sinktest"
	"github.com/dmworker/dmworker/streamer"
)

// Online schema changes are handled unless a task turns them off; the
// rules take DM's keys, in JSON and TOML alike.
func ExampleOnlineDDLConfig() {
	var on dmworker.SubTaskConfig
	fmt.Println(on.OnlineDDLEnabled())

	off := dmworker.SubTaskConfig{Name: "orders", OnlineDDLConfig: dmworker.OnlineDDLConfig{OnlineDDL: new(bool)}}
	b, err := json.Marshal(off)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(b), off.OnlineDDLEnabled())

	var custom dmworker.SubTaskConfig
	if _, err := toml.Decode(`
name = "orders"
online-ddl = true
shadow-table-rules = ["^_(.+)_(?:new|gho|shadow)$"]
trash-table-rules = ["^_(.+)_(?:ghc|del|old|trash)$"]
`, &custom); err != nil {
		log.Fatal(err)
	}
	fmt.Println(custom.OnlineDDLEnabled(), custom.ShadowTableRules)
	// Output:
	// true
	// {"name":"orders","online-ddl":false} false
	// true [^_(.+)_(?:new|gho|shadow)$]
}

// A rule that does not compile, or that does not capture the real table's
// name, is refused by NewSyncer.
func ExampleOnlineDDLConfig_rules() {
	cfg := dmworker.SyncerConfig{Task: "orders", Upstream: streamer.UpstreamConfig{Host: "127.0.0.1", Port: 3306, User: "repl"}}
	for _, rules := range [][]string{{"^_(.+)_(?:new|gho)$"}, {"^_(.+"}, {"^_.+_new$"}} {
		cfg.ShadowTableRules = rules
		_, err := dmworker.NewSyncer(cfg, sinktest.NewMemSink(), dmworker.WithCheckpointStore(&dmworker.MemoryCheckpointStore{}))
		fmt.Println(err != nil)
	}
	// Output:
	// false
	// true
	// true
}
