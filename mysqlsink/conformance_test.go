package mysqlsink_test

import (
	"testing"

	"github.com/dmworker/dmworker/sinktest"
	"github.com/go-sql-driver/mysql"
)

// TestConformance runs the sink conformance suite against a real MariaDB,
// once with the driver interpolating values into the SQL text and once with
// server-side prepared statements (the binary protocol), as hosts may
// configure either.
func TestConformance(t *testing.T) {
	m := server(t, 11)
	t.Run("interpolated", func(t *testing.T) {
		sinktest.RunSinkConformance(t, harness(openDB(t, m, nil)))
	})
	t.Run("prepared", func(t *testing.T) {
		db := openDB(t, m, func(c *mysql.Config) { c.InterpolateParams = false })
		sinktest.RunSinkConformance(t, harness(db))
	})
}
