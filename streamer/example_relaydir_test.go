package streamer_test

import (
	"errors"
	"fmt"
	"log"
	"os"

	"github.com/dmworker/dmworker/streamer"
)

// A RelayDir is the write half of a relay directory: a writer locks it,
// repairs what a crash left (Prepare), starts subdirectories as the
// upstream's identity changes, and writes binlog files through Writer.
func ExampleRelayDir() {
	path, err := os.MkdirTemp("", "relay")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(path)
	d := streamer.NewRelayDir(path, streamer.DefaultRelayFileMode, streamer.DefaultRelayDirMode, nil)
	unlock, err := d.Lock()
	if err != nil {
		log.Fatal(err)
	}
	defer unlock()
	if _, err := streamer.NewRelayDir(path, streamer.DefaultRelayFileMode, streamer.DefaultRelayDirMode, nil).Lock(); errors.Is(err, streamer.ErrRelayLocked) {
		fmt.Println("a second writer is kept out")
	}

	st, err := d.Prepare(streamer.FlavorMySQL)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("subdirectories:", len(st.Subdirs))
	sub, err := d.NewSubdir("53ea0ac5-2ec4-11ef-9a4e-0242ac110002")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(sub)
	names, err := streamer.ReadRelayIndex(path)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(names)
	// Output:
	// a second writer is kept out
	// subdirectories: 0
	// 53ea0ac5-2ec4-11ef-9a4e-0242ac110002.000001
	// [53ea0ac5-2ec4-11ef-9a4e-0242ac110002.000001]
}
