package dmworker_test

import (
	"fmt"
	"log"

	"github.com/dmworker/dmworker"
)

// A Position prints, parses back and orders binlog positions.
func ExamplePosition() {
	a, err := dmworker.ParsePosition("mysql-bin.000009:1234 mariadb-gtid=0-1-100")
	if err != nil {
		log.Fatal(err)
	}
	b, _ := dmworker.ParsePosition("mysql-bin.000010:4")
	fmt.Println(a.Name, a.Offset, a.GTIDSet)
	fmt.Println(a.Compare(b))
	// Output:
	// mysql-bin.000009 1234 0-1-100
	// -1
}
