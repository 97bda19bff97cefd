package streamer_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/google/uuid"

	"github.com/dmworker/dmworker/streamer"
)

const (
	posUUID1 = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
	posUUID2 = "8a94f357-aab4-11df-86ab-c80aa9429562"
)

// mysqlSet builds a MySQL GTID set with go-mysql's own methods: for each
// "uuid[:tag]", the GNOs given.
func posMySQLSet(t testing.TB, gtids map[string][]int64) mysql.GTIDSet {
	t.Helper()
	s := mysql.NewMysqlGTIDSet()
	for sid, gnos := range gtids {
		u, tag, _ := strings.Cut(sid, ":")
		id, err := uuid.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		for _, gno := range gnos {
			s.AddGTIDWithTag(id, mysql.NewTag(tag), gno)
		}
	}
	return &s
}

// mariaSet builds a MariaDB GTID set from go-mysql GTIDs, one per domain.
func posMariaDBSet(t testing.TB, gtids ...mysql.MariadbGTID) mysql.GTIDSet {
	t.Helper()
	s := &mysql.MariadbGTIDSet{Sets: map[uint32]*mysql.MariadbGTID{}}
	for _, g := range gtids {
		if err := s.AddSet(&g); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// mustSet parses a set that the test knows to be valid.
func mustPosGTIDSet(t testing.TB, flavor, s string) mysql.GTIDSet {
	t.Helper()
	set, err := streamer.NewGTIDSet(flavor, s)
	if err != nil {
		t.Fatalf("NewGTIDSet(%q, %q): %v", flavor, s, err)
	}
	return set
}

func TestParsePositionValid(t *testing.T) {
	tests := []struct {
		in    string
		want  streamer.Position
		canon string // String of the result; "" means in
	}{
		{in: "(none)", want: streamer.Position{}},
		{in: "mysql-bin.000003:1234", want: streamer.Position{Name: "mysql-bin.000003", Offset: 1234}},
		{in: "mysql-bin.000003:0", want: streamer.Position{Name: "mysql-bin.000003"}},
		{in: "mysql-bin.000003:0004", want: streamer.Position{Name: "mysql-bin.000003", Offset: 4}, canon: "mysql-bin.000003:4"},
		{in: "mysql-bin.000003:18446744073709551615", want: streamer.Position{Name: "mysql-bin.000003", Offset: math.MaxUint64}},
		{in: "a:b:7", want: streamer.Position{Name: "a:b", Offset: 7}},
		{in: "(none):7", want: streamer.Position{Name: "(none)", Offset: 7}},
		{in: "relay-bin.é:7", want: streamer.Position{Name: "relay-bin.é", Offset: 7}},
		{
			in:   "mysql-bin.000003:1234 mariadb-gtid=0-1-100,1-2-5",
			want: streamer.Position{Name: "mysql-bin.000003", Offset: 1234, Flavor: streamer.FlavorMariaDB, GTIDSet: posMariaDBSet(t, mysql.MariadbGTID{DomainID: 0, ServerID: 1, SequenceNumber: 100}, mysql.MariadbGTID{DomainID: 1, ServerID: 2, SequenceNumber: 5})},
		},
		{
			in:    "mysql-bin.000003:1234 mariadb-gtid=10-1-1,2-1-1",
			want:  streamer.Position{Name: "mysql-bin.000003", Offset: 1234, Flavor: streamer.FlavorMariaDB, GTIDSet: posMariaDBSet(t, mysql.MariadbGTID{DomainID: 10, ServerID: 1, SequenceNumber: 1}, mysql.MariadbGTID{DomainID: 2, ServerID: 1, SequenceNumber: 1})},
			canon: "mysql-bin.000003:1234 mariadb-gtid=2-1-1,10-1-1",
		},
		{
			in:   "mariadb-gtid=0-0-0",
			want: streamer.Position{Flavor: streamer.FlavorMariaDB, GTIDSet: posMariaDBSet(t, mysql.MariadbGTID{})},
		},
		{
			in:   "mariadb-gtid=4294967295-4294967295-18446744073709551615",
			want: streamer.Position{Flavor: streamer.FlavorMariaDB, GTIDSet: posMariaDBSet(t, mysql.MariadbGTID{DomainID: math.MaxUint32, ServerID: math.MaxUint32, SequenceNumber: math.MaxUint64})},
		},
		{in: "mariadb-gtid=0-1-100", want: streamer.Position{Flavor: streamer.FlavorMariaDB, GTIDSet: mustPosGTIDSet(t, "mariadb", "0-1-100")}},
		{in: "mariadb-gtid=", want: streamer.Position{Flavor: streamer.FlavorMariaDB, GTIDSet: mustPosGTIDSet(t, "mariadb", "")}},
		{in: "mysql-gtid=", want: streamer.Position{Flavor: streamer.FlavorMySQL, GTIDSet: mustPosGTIDSet(t, "mysql", "")}},
		{in: "x.1:5 mysql-gtid=", want: streamer.Position{Name: "x.1", Offset: 5, Flavor: streamer.FlavorMySQL, GTIDSet: mustPosGTIDSet(t, "mysql", "")}},
		{
			in:   "mysql-bin.000003:1234 mysql-gtid=" + posUUID1 + ":1-5",
			want: streamer.Position{Name: "mysql-bin.000003", Offset: 1234, Flavor: streamer.FlavorMySQL, GTIDSet: posMySQLSet(t, map[string][]int64{posUUID1: {1, 2, 3, 4, 5}})},
		},
		{
			// A single-GNO set looks like "name:offset"; the prefix decides.
			in:   "mysql-gtid=" + posUUID1 + ":5",
			want: streamer.Position{Flavor: streamer.FlavorMySQL, GTIDSet: posMySQLSet(t, map[string][]int64{posUUID1: {5}})},
		},
		{
			in:    "mysql-gtid=" + strings.ToUpper(posUUID2) + ":7:3-4:1,{" + posUUID1 + "}:Blue:+9:1-2",
			want:  streamer.Position{Flavor: streamer.FlavorMySQL, GTIDSet: posMySQLSet(t, map[string][]int64{posUUID1 + ":blue": {1, 2, 9}, posUUID2: {1, 3, 4, 7}})},
			canon: "mysql-gtid=" + posUUID1 + ":blue:1-2:9," + posUUID2 + ":1:3-4:7",
		},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := streamer.ParsePosition(tt.in)
			if err != nil {
				t.Fatalf("ParsePosition: %v", err)
			}
			if !got.Equal(tt.want) {
				t.Errorf("ParsePosition = %v, want %v", got, tt.want)
			}
			if err := got.Validate(); err != nil {
				t.Errorf("Validate: %v", err)
			}
			canon := tt.canon
			if canon == "" {
				canon = tt.in
			}
			if s := got.String(); s != canon {
				t.Errorf("String = %q, want %q", s, canon)
			}
		})
	}
}

func TestParsePositionInvalid(t *testing.T) {
	for _, in := range []string{
		"",
		" ",
		"(none) ",
		"none",
		"mysql-bin.000003",
		"mysql-bin.000003:",
		":5",
		"mysql-bin.000003:-1",
		"mysql-bin.000003:+1",
		"mysql-bin.000003:1_000",
		"mysql-bin.000003:0x10",
		"mysql-bin.000003:18446744073709551616",
		"mysql-bin.000003:12 ",
		" mysql-bin.000003:12",
		"mysql-bin.000003:12  mysql-gtid=",
		"mysql-bin.000003:12\tmysql-gtid=",
		"mysql-bin.000003:12 mysql-bin.000004:5",
		"mysql-bin.000003:12 postgres-gtid=1",
		"mysql-bin.000003:12 mysql-gtid",
		"mysql bin.000003:12",
		"dir/mysql-bin.000003:12",
		"mysql-bin;000003:12",
		"mysql-bin\x00.000003:12",
		"mysql-bin\x01.000003:12",
		"mysql-bin\u00a0.000003:12",
		"mysql-bin\xff.000003:12",
		".:12",
		"..:12",
		"mariadb-gtid=0-1-2 mysql-bin.000003:12",
		"mariadb-gtid=0-1-2 ",
		"mariadb-gtid=0-1",
		"mariadb-gtid=0-1-2,",
		"mariadb-gtid=,0-1-2",
		"mariadb-gtid=0-1-2,,1-1-1",
		"mariadb-gtid=0-1-2,0-1-3",
		"mariadb-gtid=0-1-2, 1-1-1",
		"mariadb-gtid=4294967296-1-1",
		"mariadb-gtid=0--1-1",
		"mariadb-gtid=a-b-c",
		"mysql-gtid=" + posUUID1,
		"mysql-gtid=" + posUUID1 + ":",
		"mysql-gtid=" + posUUID1 + ":0-x",
		"mysql-gtid=" + posUUID1 + ":5-1",
		"mysql-gtid=" + posUUID1 + ":-1",
		"mysql-gtid=" + posUUID1 + ":1-9223372036854775807",
		"mysql-gtid=" + posUUID1 + ":tag",
		"mysql-gtid=" + posUUID1 + ":1-5,",
		"mysql-gtid=" + posUUID1 + ":1-5, " + posUUID2 + ":1",
		"mysql-gtid=" + posUUID1 + ":1-5,\n" + posUUID2 + ":1",
		"mysql-gtid=not-a-uuid:1",
		"mysql-gtid=0-1-2",
		"mariadb-gtid=" + posUUID1 + ":1",
	} {
		p, err := streamer.ParsePosition(in)
		if err == nil {
			t.Errorf("ParsePosition(%q) = %v, want an error", in, p)
			continue
		}
		if !errors.Is(err, streamer.ErrInvalidPosition) {
			t.Errorf("ParsePosition(%q): error %v does not wrap ErrInvalidPosition", in, err)
		}
	}
}

func TestNewGTIDSet(t *testing.T) {
	// MySQL's own multi-line output is accepted here, though not inside a
	// position's text form.
	set, err := streamer.NewGTIDSet(streamer.FlavorMySQL, posUUID1+":1-5,\n"+posUUID2+":1-3")
	if err != nil {
		t.Fatal(err)
	}
	if want := posMySQLSet(t, map[string][]int64{posUUID1: {1, 2, 3, 4, 5}, posUUID2: {1, 2, 3}}); !set.Equal(want) {
		t.Errorf("got %v, want %v", set, want)
	}
	for _, tt := range []struct{ flavor, s string }{
		{"", ""},
		{"MySQL", ""},
		{"mariadb", "0-1-2,0-2-3"},
		{"mariadb", "0-1-2,"},
		{"mysql", "0-1-2"},
	} {
		if _, err := streamer.NewGTIDSet(tt.flavor, tt.s); !errors.Is(err, streamer.ErrInvalidPosition) {
			t.Errorf("NewGTIDSet(%q, %q) error = %v, want ErrInvalidPosition", tt.flavor, tt.s, err)
		}
	}
}

// roundTripPositions are valid positions built from go-mysql types.
func posRoundTripCases(t testing.TB) []streamer.Position {
	my := posMySQLSet(t, map[string][]int64{
		posUUID1:           {1, 2, 3, 10, 1 << 40},
		posUUID2:           {7},
		posUUID2 + ":blue": {1, 2},
		posUUID2 + ":_z9":  {3},
	})
	maria := posMariaDBSet(t,
		mysql.MariadbGTID{DomainID: 0, ServerID: 1, SequenceNumber: 100},
		mysql.MariadbGTID{DomainID: 1, ServerID: 2, SequenceNumber: 5},
		mysql.MariadbGTID{DomainID: 10, ServerID: 3, SequenceNumber: 1},
		mysql.MariadbGTID{DomainID: 2, ServerID: math.MaxUint32, SequenceNumber: math.MaxUint64},
	)
	var ps []streamer.Position
	for _, off := range []uint64{4, 1<<32 + 5, math.MaxUint64} {
		ps = append(ps,
			streamer.Position{Name: "mysql-bin.000003", Offset: off},
			streamer.Position{Name: "mysql-bin.000003", Offset: off, Flavor: streamer.FlavorMySQL, GTIDSet: my},
			streamer.Position{Name: "mariadb-bin.1000000", Offset: off, Flavor: streamer.FlavorMariaDB, GTIDSet: maria},
		)
	}
	return append(ps,
		streamer.Position{},
		streamer.Position{Name: "x"},
		streamer.Position{Flavor: streamer.FlavorMySQL, GTIDSet: my},
		streamer.Position{Flavor: streamer.FlavorMariaDB, GTIDSet: maria},
		streamer.Position{Flavor: streamer.FlavorMySQL, GTIDSet: posMySQLSet(t, nil)},
		streamer.Position{Flavor: streamer.FlavorMariaDB, GTIDSet: posMariaDBSet(t)},
		streamer.Position{Name: "a:b", Offset: 9, Flavor: streamer.FlavorMariaDB, GTIDSet: posMariaDBSet(t, mysql.MariadbGTID{})},
	)
}

func TestPositionRoundTrip(t *testing.T) {
	for _, p := range posRoundTripCases(t) {
		t.Run(p.String(), func(t *testing.T) {
			if err := p.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}

			q, err := streamer.ParsePosition(p.String())
			if err != nil {
				t.Fatalf("ParsePosition(String()): %v", err)
			}
			if !q.Equal(p) {
				t.Errorf("text round trip: got %v, want %v", q, p)
			}

			data, err := json.Marshal(p)
			if err != nil {
				t.Fatalf("json.Marshal: %v", err)
			}
			var r streamer.Position
			if err := json.Unmarshal(data, &r); err != nil {
				t.Fatalf("json.Unmarshal(%s): %v", data, err)
			}
			if !r.Equal(p) {
				t.Errorf("JSON round trip of %s: got %v, want %v", data, r, p)
			}

			text, err := p.MarshalText()
			if err != nil {
				t.Fatalf("MarshalText: %v", err)
			}
			var u streamer.Position
			if err := u.UnmarshalText(text); err != nil {
				t.Fatalf("UnmarshalText(%s): %v", text, err)
			}
			if !u.Equal(p) {
				t.Errorf("text marshal round trip: got %v, want %v", u, p)
			}

			c := p.Clone()
			if !c.Equal(p) {
				t.Errorf("Clone = %v, want %v", c, p)
			}
		})
	}
}

func TestPositionJSON(t *testing.T) {
	maria := mustPosGTIDSet(t, "mariadb", "0-1-100")
	tests := []struct {
		p    streamer.Position
		want string
	}{
		{streamer.Position{}, `{}`},
		{streamer.Position{Name: "mysql-bin.000003"}, `{"name":"mysql-bin.000003","offset":0}`},
		{streamer.Position{Name: "mysql-bin.000003", Offset: math.MaxUint64}, `{"name":"mysql-bin.000003","offset":18446744073709551615}`},
		{
			streamer.Position{Name: "mysql-bin.000003", Offset: 1234, Flavor: "mariadb", GTIDSet: maria},
			`{"name":"mysql-bin.000003","offset":1234,"flavor":"mariadb","gtid":"0-1-100"}`,
		},
		{streamer.Position{Flavor: "mysql", GTIDSet: mustPosGTIDSet(t, "mysql", "")}, `{"flavor":"mysql","gtid":""}`},
	}
	for _, tt := range tests {
		got, err := json.Marshal(tt.p)
		if err != nil {
			t.Errorf("json.Marshal(%v): %v", tt.p, err)
			continue
		}
		if string(got) != tt.want {
			t.Errorf("json.Marshal(%v) = %s, want %s", tt.p, got, tt.want)
		}
	}

	// Inside other values, and through a pointer, JSON uses the object form
	// even though Position is also a TextMarshaler.
	p := streamer.Position{Name: "mysql-bin.000003", Offset: 4}
	got, err := json.Marshal(struct {
		P  streamer.Position
		PP *streamer.Position
		M  map[string]streamer.Position
	}{p, &p, map[string]streamer.Position{"k": p}})
	if err != nil {
		t.Fatal(err)
	}
	obj := `{"name":"mysql-bin.000003","offset":4}`
	if want := `{"P":` + obj + `,"PP":` + obj + `,"M":{"k":` + obj + `}}`; string(got) != want {
		t.Errorf("nested json.Marshal = %s, want %s", got, want)
	}

	// null leaves the value alone.
	q := p
	if err := json.Unmarshal([]byte(`null`), &q); err != nil || !q.Equal(p) {
		t.Errorf("Unmarshal(null) = %v, %v; want %v unchanged", q, err, p)
	}
	// Unknown fields are ignored.
	if err := json.Unmarshal([]byte(`{"name":"b.1","offset":8,"server_uuid":"x"}`), &q); err != nil ||
		!q.Equal(streamer.Position{Name: "b.1", Offset: 8}) {
		t.Errorf("Unmarshal with unknown field = %v, %v", q, err)
	}
}

func TestPositionJSONInvalid(t *testing.T) {
	for _, in := range []string{
		`[]`,
		`"mysql-bin.000003:4"`,
		`{"name":5}`,
		`{"name":"a.1","offset":-1}`,
		`{"name":"a.1","offset":1.5}`,
		`{"name":"a.1","offset":1e3}`,
		`{"name":"a.1","offset":18446744073709551616}`,
		`{"name":"a.1","offset":"4"}`,
		`{"offset":4}`,
		`{"name":"a/b.1","offset":4}`,
		`{"name":"a b","offset":4}`,
		`{"name":"mysql-gtid=x","offset":4}`,
		`{"flavor":"mysql"}`,
		`{"gtid":""}`,
		`{"flavor":"oracle","gtid":""}`,
		`{"flavor":"mariadb","gtid":"0-1"}`,
		`{"flavor":"mariadb","gtid":"0-1-1,0-1-2"}`,
		`{"flavor":"mysql","gtid":"0-1-1"}`,
		`{"flavor":"mysql","gtid":null}`,
	} {
		orig := streamer.Position{Name: "keep.1", Offset: 1}
		p := orig
		err := json.Unmarshal([]byte(in), &p)
		if err == nil {
			t.Errorf("Unmarshal(%s) = %v, want an error", in, p)
			continue
		}
		if !p.Equal(orig) {
			t.Errorf("Unmarshal(%s) changed the position to %v", in, p)
		}
		var ute *json.UnmarshalTypeError
		if !errors.Is(err, streamer.ErrInvalidPosition) && !errors.As(err, &ute) {
			t.Errorf("Unmarshal(%s): error %v wraps neither ErrInvalidPosition nor a JSON type error", in, err)
		}
	}
}

func TestPositionValidate(t *testing.T) {
	my := mustPosGTIDSet(t, "mysql", posUUID1+":1-5")
	maria := mustPosGTIDSet(t, "mariadb", "0-1-5")
	badTag := mysql.NewMysqlGTIDSet()
	badTag.AddGTIDWithTag(uuid.MustParse(posUUID1), mysql.NewTag("Not A Tag"), 1)
	unnormalized := mysql.MysqlGTIDSet{uuid.MustParse(posUUID1): {mysql.Tag{}: {{Start: 5, Stop: 6}, {Start: 1, Stop: 2}}}}
	adjacent := mysql.MysqlGTIDSet{uuid.MustParse(posUUID1): {mysql.Tag{}: {{Start: 1, Stop: 2}, {Start: 2, Stop: 3}}}}
	negative := mysql.MysqlGTIDSet{uuid.MustParse(posUUID1): {mysql.Tag{}: {{Start: -3, Stop: 2}}}}
	noIntervals := mysql.MysqlGTIDSet{uuid.MustParse(posUUID1): {mysql.Tag{}: {}}}
	noTags := mysql.MysqlGTIDSet{uuid.MustParse(posUUID1): {}}
	wrongDomain := &mysql.MariadbGTIDSet{Sets: map[uint32]*mysql.MariadbGTID{1: {DomainID: 2, ServerID: 1, SequenceNumber: 1}}}
	nilGTID := &mysql.MariadbGTIDSet{Sets: map[uint32]*mysql.MariadbGTID{1: nil}}

	for _, tt := range []struct {
		name string
		p    streamer.Position
	}{
		{"offset without name", streamer.Position{Offset: 4}},
		{"slash", streamer.Position{Name: "a/b", Offset: 4}},
		{"dotdot", streamer.Position{Name: "..", Offset: 4}},
		{"gtid prefix", streamer.Position{Name: "mariadb-gtid=0-1-2", Offset: 4}},
		{"flavor without set", streamer.Position{Name: "a.1", Flavor: "mysql"}},
		{"set without flavor", streamer.Position{Name: "a.1", GTIDSet: my}},
		{"unknown flavor", streamer.Position{Flavor: "oracle", GTIDSet: my}},
		{"flavor mismatch", streamer.Position{Flavor: "mariadb", GTIDSet: my}},
		{"flavor mismatch 2", streamer.Position{Flavor: "mysql", GTIDSet: maria}},
		{"typed nil mysql", streamer.Position{Flavor: "mysql", GTIDSet: (*mysql.MysqlGTIDSet)(nil)}},
		{"typed nil mariadb", streamer.Position{Flavor: "mariadb", GTIDSet: (*mysql.MariadbGTIDSet)(nil)}},
		{"bad tag", streamer.Position{Flavor: "mysql", GTIDSet: &badTag}},
		{"unnormalized", streamer.Position{Flavor: "mysql", GTIDSet: &unnormalized}},
		{"adjacent", streamer.Position{Flavor: "mysql", GTIDSet: &adjacent}},
		{"negative", streamer.Position{Flavor: "mysql", GTIDSet: &negative}},
		{"no intervals", streamer.Position{Flavor: "mysql", GTIDSet: &noIntervals}},
		{"no tags", streamer.Position{Flavor: "mysql", GTIDSet: &noTags}},
		{"wrong domain", streamer.Position{Flavor: "mariadb", GTIDSet: wrongDomain}},
		{"nil gtid", streamer.Position{Flavor: "mariadb", GTIDSet: nilGTID}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.p.Validate(); !errors.Is(err, streamer.ErrInvalidPosition) {
				t.Errorf("Validate(%v) = %v, want ErrInvalidPosition", tt.p, err)
			}
			if _, err := json.Marshal(tt.p); !errors.Is(err, streamer.ErrInvalidPosition) {
				t.Errorf("json.Marshal(%v) error = %v, want ErrInvalidPosition", tt.p, err)
			}
			if _, err := tt.p.MarshalText(); !errors.Is(err, streamer.ErrInvalidPosition) {
				t.Errorf("MarshalText(%v) error = %v, want ErrInvalidPosition", tt.p, err)
			}
			_ = tt.p.String() // must not panic
		})
	}
}

func TestPositionCompare(t *testing.T) {
	// In ascending order; each distinct.
	ordered := []streamer.Position{
		{},
		{Name: "a", Offset: 4},
		{Name: "a.1", Offset: 4},
		{Name: "a.b", Offset: 4},
		{Name: "mysql-bin", Offset: 4},
		{Name: "mysql-bin.000001", Offset: 4},
		{Name: "mysql-bin.000001", Offset: 1<<32 + 5},
		{Name: "mysql-bin.000001", Offset: math.MaxUint64},
		{Name: "mysql-bin.000009", Offset: 4},
		{Name: "mysql-bin.000010", Offset: 0},
		{Name: "mysql-bin.000010", Offset: 4},
		{Name: "mysql-bin.00010", Offset: 4}, // same number: string order
		{Name: "mysql-bin.10", Offset: 4},
		{Name: "mysql-bin.999999", Offset: 4},
		{Name: "mysql-bin.1000000", Offset: 4},
		{Name: "mysql-bin.99999999999999999999999", Offset: 4},
		{Name: "mysql-bin.100000000000000000000000", Offset: 4},
		{Name: "mysql-bin.5x", Offset: 4},
		{Name: "mysql-bin.x", Offset: 4},
		{Name: "mysql-bin.x.2", Offset: 4},
		{Name: "mysql-bin.x.10", Offset: 4},
	}
	for i, a := range ordered {
		for j, b := range ordered {
			want := 0
			if i < j {
				want = -1
			} else if i > j {
				want = 1
			}
			if got := a.Compare(b); got != want {
				t.Errorf("%v.Compare(%v) = %d, want %d", a, b, got, want)
			}
		}
	}

	// GTID sets do not take part.
	a := streamer.Position{Name: "mysql-bin.000001", Offset: 4}
	b := a
	b.Flavor, b.GTIDSet = "mariadb", mustPosGTIDSet(t, "mariadb", "0-1-5")
	if c := a.Compare(b); c != 0 {
		t.Errorf("Compare with GTID set only on one side = %d, want 0", c)
	}
}

func TestPositionCompareGTID(t *testing.T) {
	pos := func(flavor, set string) streamer.Position {
		return streamer.Position{Name: "mysql-bin.000001", Offset: 4, Flavor: flavor, GTIDSet: mustPosGTIDSet(t, flavor, set)}
	}
	file := streamer.Position{Name: "mysql-bin.000001", Offset: 4}
	tests := []struct {
		name   string
		p, o   streamer.Position
		cmp    int
		wantOK bool
	}{
		{"nil both", file, file, 0, false},
		{"nil one", file, pos("mysql", ""), 0, false},
		{"nil other", pos("mysql", ""), file, 0, false},
		{"flavours differ", pos("mysql", ""), pos("mariadb", ""), 0, false},
		{"empty mysql", pos("mysql", ""), pos("mysql", ""), 0, true},
		{"empty mariadb", pos("mariadb", ""), pos("mariadb", ""), 0, true},
		{"mysql equal", pos("mysql", posUUID1+":1-5"), pos("mysql", posUUID1+":1-3:4-5"), 0, true},
		{"mysql behind", pos("mysql", posUUID1+":1-5"), pos("mysql", posUUID1+":1-6"), -1, true},
		{"mysql ahead", pos("mysql", posUUID1+":1-5,"+posUUID2+":1"), pos("mysql", posUUID1+":1-5"), 1, true},
		{"mysql empty behind", pos("mysql", ""), pos("mysql", posUUID1+":1"), -1, true},
		{"mysql tag ahead", pos("mysql", posUUID1+":1-5:t:1"), pos("mysql", posUUID1+":1-5"), 1, true},
		{"mysql incomparable", pos("mysql", posUUID1+":1-5"), pos("mysql", posUUID2+":1-5"), 0, false},
		{"mysql gap", pos("mysql", posUUID1+":1-3:5"), pos("mysql", posUUID1+":1-4"), 0, false},
		{"mariadb equal", pos("mariadb", "0-1-5,1-1-2"), pos("mariadb", "1-1-2,0-1-5"), 0, true},
		{"mariadb behind", pos("mariadb", "0-1-5"), pos("mariadb", "0-1-6"), -1, true},
		{"mariadb ahead", pos("mariadb", "0-1-5,1-1-1"), pos("mariadb", "0-1-5"), 1, true},
		{"mariadb empty behind", pos("mariadb", ""), pos("mariadb", "0-1-1"), -1, true},
		{"mariadb across servers", pos("mariadb", "0-2-7"), pos("mariadb", "0-1-6"), 1, true},
		{"mariadb same seq other server", pos("mariadb", "0-1-5"), pos("mariadb", "0-2-5"), 0, false},
		{"mariadb domains cross", pos("mariadb", "0-1-5,1-1-1"), pos("mariadb", "0-1-4,1-1-2"), 0, false},
		{"mariadb disjoint", pos("mariadb", "0-1-5"), pos("mariadb", "1-1-5"), 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, ok := tt.p.CompareGTID(tt.o)
			if c != tt.cmp || ok != tt.wantOK {
				t.Errorf("%v.CompareGTID(%v) = %d, %v; want %d, %v", tt.p, tt.o, c, ok, tt.cmp, tt.wantOK)
			}
		})
	}
}

func TestPositionEqual(t *testing.T) {
	base := streamer.Position{Name: "mysql-bin.000001", Offset: 4, Flavor: "mariadb", GTIDSet: mustPosGTIDSet(t, "mariadb", "0-1-5")}
	with := func(f func(*streamer.Position)) streamer.Position {
		p := base.Clone()
		f(&p)
		return p
	}
	tests := []struct {
		name string
		p, o streamer.Position
		want bool
	}{
		{"zero", streamer.Position{}, streamer.Position{}, true},
		{"self", base, base, true},
		{"clone", base, base.Clone(), true},
		{"same text", base, with(func(p *streamer.Position) { p.GTIDSet = mustPosGTIDSet(t, "mariadb", "0-1-5") }), true},
		{"name", base, with(func(p *streamer.Position) { p.Name = "mysql-bin.000002" }), false},
		{"offset", base, with(func(p *streamer.Position) { p.Offset = 5 }), false},
		{"server id", base, with(func(p *streamer.Position) { p.GTIDSet = mustPosGTIDSet(t, "mariadb", "0-2-5") }), false},
		{"extra domain", base, with(func(p *streamer.Position) { p.GTIDSet = mustPosGTIDSet(t, "mariadb", "0-1-5,1-1-1") }), false},
		{"nil vs set", base, with(func(p *streamer.Position) { p.Flavor, p.GTIDSet = "", nil }), false},
		{"nil vs empty", streamer.Position{Name: "a.1"}, streamer.Position{Name: "a.1", Flavor: "mysql", GTIDSet: mustPosGTIDSet(t, "mysql", "")}, false},
		{"empty vs empty other flavour", streamer.Position{Flavor: "mariadb", GTIDSet: mustPosGTIDSet(t, "mariadb", "")}, streamer.Position{Flavor: "mysql", GTIDSet: mustPosGTIDSet(t, "mysql", "")}, false},
		{"mysql normalized", streamer.Position{Flavor: "mysql", GTIDSet: mustPosGTIDSet(t, "mysql", posUUID1+":1-2:3")}, streamer.Position{Flavor: "mysql", GTIDSet: mustPosGTIDSet(t, "mysql", posUUID1+":1-3")}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.p.Equal(tt.o); got != tt.want {
				t.Errorf("%v.Equal(%v) = %v, want %v", tt.p, tt.o, got, tt.want)
			}
			if got := tt.o.Equal(tt.p); got != tt.want {
				t.Errorf("%v.Equal(%v) = %v, want %v (reversed)", tt.o, tt.p, got, tt.want)
			}
		})
	}
}

func TestPositionCloneIsDeep(t *testing.T) {
	for _, flavor := range []string{streamer.FlavorMySQL, streamer.FlavorMariaDB} {
		text := map[string]string{"mysql": posUUID1 + ":1-5", "mariadb": "0-1-5"}[flavor]
		next := map[string]string{"mysql": posUUID1 + ":6", "mariadb": "0-1-6"}[flavor]
		p := streamer.Position{Name: "a.1", Offset: 4, Flavor: flavor, GTIDSet: mustPosGTIDSet(t, flavor, text)}
		c := p.Clone()
		if err := c.GTIDSet.Update(next); err != nil {
			t.Fatal(err)
		}
		if got := p.GTIDSet.String(); got != text {
			t.Errorf("%s: updating the clone changed the original to %q", flavor, got)
		}
		if c.Equal(p) {
			t.Errorf("%s: clone still equal after update", flavor)
		}
	}
	if c := (streamer.Position{Name: "a.1"}).Clone(); c.GTIDSet != nil {
		t.Errorf("Clone of a nil set = %v", c.GTIDSet)
	}
}

func TestPositionIsZero(t *testing.T) {
	if !(streamer.Position{}).IsZero() {
		t.Error("zero Position is not IsZero")
	}
	for _, p := range []streamer.Position{
		{Name: "a.1"},
		{Offset: 1},
		{Flavor: "mysql"},
		{Flavor: "mysql", GTIDSet: mustPosGTIDSet(t, "mysql", "")},
	} {
		if p.IsZero() {
			t.Errorf("%#v.IsZero() = true", p)
		}
	}
}

func FuzzParsePosition(f *testing.F) {
	for _, s := range []string{
		"(none)",
		"mysql-bin.000003:1234",
		"mysql-bin.000003:18446744073709551615",
		"mysql-bin.000003:1234 mariadb-gtid=0-1-100,1-2-5",
		"mysql-bin.000003:1234 mysql-gtid=" + posUUID1 + ":1-5",
		"mysql-bin.000003:4 mysql-gtid=" + posUUID1 + ":1-5:7:tag:3," + posUUID2 + ":1",
		"mariadb-gtid=0-1-100",
		"mariadb-gtid=",
		"mysql-gtid=",
		"mysql-gtid=" + posUUID1 + ":5",
		"a:b:7",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := streamer.ParsePosition(s)
		if err != nil {
			if !errors.Is(err, streamer.ErrInvalidPosition) {
				t.Fatalf("ParsePosition(%q): error %v does not wrap ErrInvalidPosition", s, err)
			}
			return
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("ParsePosition(%q) = %v, which fails Validate: %v", s, p, err)
		}
		printed := p.String()
		q, err := streamer.ParsePosition(printed)
		if err != nil {
			t.Fatalf("ParsePosition(%q) = %v; reparsing %q: %v", s, p, printed, err)
		}
		if !q.Equal(p) {
			t.Fatalf("ParsePosition(%q) = %v; reparsing %q gave %v", s, p, printed, q)
		}
		if again := q.String(); again != printed {
			t.Fatalf("ParsePosition(%q): printed %q, then %q", s, printed, again)
		}
		if p.Compare(q) != 0 {
			t.Fatalf("%v.Compare(reparsed) != 0", p)
		}
		if p.GTIDSet != nil {
			if c, ok := p.CompareGTID(q); c != 0 || !ok {
				t.Fatalf("%v.CompareGTID(reparsed) = %d, %v", p, c, ok)
			}
		}

		data, err := json.Marshal(p)
		if err != nil {
			t.Fatalf("json.Marshal(%v): %v", p, err)
		}
		var r streamer.Position
		if err := json.Unmarshal(data, &r); err != nil {
			t.Fatalf("json.Unmarshal(%s): %v", data, err)
		}
		if !r.Equal(p) {
			t.Fatalf("JSON round trip of %v via %s gave %v", p, data, r)
		}
	})
}

func ExampleParsePosition() {
	p, err := streamer.ParsePosition("mysql-bin.000003:1234 mariadb-gtid=1-2-5,0-1-100")
	if err != nil {
		panic(err)
	}
	fmt.Println(p.Name, p.Offset, p.Flavor, p.GTIDSet)
	fmt.Println(p)

	_, err = streamer.ParsePosition("relay/mysql-bin.000003:1234")
	fmt.Println(errors.Is(err, streamer.ErrInvalidPosition))
	// Output:
	// mysql-bin.000003 1234 mariadb 0-1-100,1-2-5
	// mysql-bin.000003:1234 mariadb-gtid=0-1-100,1-2-5
	// true
}

func ExamplePosition_Compare() {
	a := streamer.Position{Name: "mysql-bin.999999", Offset: 120}
	b := streamer.Position{Name: "mysql-bin.1000000", Offset: 4}
	fmt.Println(a.Compare(b))
	// Output: -1
}

func ExamplePosition_CompareGTID() {
	set, _ := streamer.NewGTIDSet(streamer.FlavorMySQL, posUUID1+":1-5")
	applied := streamer.Position{Flavor: streamer.FlavorMySQL, GTIDSet: set}
	upstream := applied.Clone()
	if err := upstream.GTIDSet.Update(posUUID1 + ":6-9"); err != nil {
		panic(err)
	}
	fmt.Println(applied.CompareGTID(upstream))
	// Output: -1 true
}

func ExamplePosition_MarshalJSON() {
	p, _ := streamer.ParsePosition("mysql-bin.000003:1234 mariadb-gtid=0-1-100")
	data, _ := json.Marshal(p)
	fmt.Println(string(data))
	// Output: {"name":"mysql-bin.000003","offset":1234,"flavor":"mariadb","gtid":"0-1-100"}
}
