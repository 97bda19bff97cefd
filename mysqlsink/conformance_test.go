package mysqlsink_test

import (
	"testing"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/mysqlsink"
	"github.com/dmworker/dmworker/sinktest"
	"github.com/go-sql-driver/mysql"
)

// TestConformance runs the sink conformance suite against a real MariaDB:
// with the values written into the statements by the sink (its default on
// a utf8mb4 connection), and with placeholders, which the driver
// interpolates or sends as server-side prepared statements (the binary
// protocol), as hosts may configure either.
func TestConformance(t *testing.T) {
	m := server(t, 11)
	t.Run("literals", func(t *testing.T) {
		sinktest.RunSinkConformance(t, harness(openDB(t, m, nil)))
	})
	t.Run("placeholders interpolated", func(t *testing.T) {
		sinktest.RunSinkConformance(t, placeholders(harness(openDB(t, m, nil))))
	})
	t.Run("placeholders prepared", func(t *testing.T) {
		db := openDB(t, m, func(c *mysql.Config) { c.InterpolateParams = false })
		sinktest.RunSinkConformance(t, placeholders(harness(db)))
	})
	t.Run("exclusive pool", func(t *testing.T) {
		sinktest.RunSinkConformance(t, harness(openDB(t, m, nil), mysqlsink.WithExclusivePool()))
	})
}

func placeholders(h sinktest.Harness) sinktest.Harness {
	newSink := h.New
	h.New = func(t *testing.T) dmworker.Sink {
		s := newSink(t)
		mysqlsink.UsePlaceholders(s.(*mysqlsink.Sink))
		return s
	}
	return h
}
