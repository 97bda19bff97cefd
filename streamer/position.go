package streamer

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/go-mysql-org/go-mysql/mysql"
	perrors "github.com/pingcap/errors"
)

// GTID set flavours, the values of Position.Flavor. They equal go-mysql's
// mysql.MySQLFlavor and mysql.MariaDBFlavor and appear in a position's text
// and JSON forms, so they never change.
const (
	FlavorMySQL   = mysql.MySQLFlavor   // "mysql": UUID-based executed GTID sets
	FlavorMariaDB = mysql.MariaDBFlavor // "mariadb": one domain-server-sequence GTID per domain
)

// ErrInvalidPosition is wrapped by every error that ParsePosition, NewGTIDSet,
// Validate and the (un)marshal methods return for bad input; match it with
// errors.Is. The message names the offending text.
var ErrInvalidPosition = errors.New("streamer: invalid binlog position")

// zeroText is what the zero Position prints as, and the only text that parses
// to it. Part of the text format: never change it.
const zeroText = "(none)"

// gtidSuffix follows the flavour in the text form: "mysql-gtid=...".
const gtidSuffix = "-gtid="

// Position is a place in one upstream server's binlog: a file and a byte
// offset in it, plus the set of GTIDs executed up to that place.
//
// Either half may be missing: a GTID-only position (Name "", Offset 0) starts
// a GTID-based stream, a file-only one (GTIDSet nil) serves upstreams without
// GTIDs. The zero Position means "no position".
//
// A Position is a value, but GTIDSet is a reference: copies share the set, so
// use Clone before modifying it. Positions that pass Validate survive the text
// form (String and ParsePosition) and the JSON form unchanged (Equal).
type Position struct {
	// Name is the binlog file name, e.g. "mysql-bin.000003", or "" when unknown
	// (a GTID-only position). See Validate for the allowed names.
	Name string

	// Offset is the byte offset in the file; 0 when Name is "". 64 bits wide:
	// binlog files over 4 GiB exist.
	Offset uint64

	// Flavor is the flavour of GTIDSet, FlavorMySQL or FlavorMariaDB, and ""
	// exactly when GTIDSet is nil.
	Flavor string

	// GTIDSet is the set of GTIDs executed at this position, a
	// *mysql.MysqlGTIDSet (FlavorMySQL) or *mysql.MariadbGTIDSet
	// (FlavorMariaDB), or nil when unknown or unused. An empty set is not nil:
	// it says that no GTID has been executed yet.
	GTIDSet mysql.GTIDSet
}

// ParsePosition parses the text form of a position, exactly as String prints
// it:
//
//	(none)                                   the zero Position
//	mysql-bin.000003:1234                    file name and decimal offset
//	mysql-bin.000003:1234 mariadb-gtid=0-1-100,1-2-5
//	mysql-bin.000003:1234 mysql-gtid=3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5
//	mariadb-gtid=0-1-100                     GTID set only (Name "", Offset 0)
//	mariadb-gtid=                            an empty, non-nil set
//
// The empty string is an error. File name and GTID part are separated by
// exactly one space; no other whitespace is allowed, not even inside the GTID
// set (NewGTIDSet accepts MySQL's multi-line form, ParsePosition does not).
// Text that begins with "mysql-gtid=" or "mariadb-gtid=" is a GTID-only
// position. Otherwise the file name is the text before the last ':', and must
// be valid (see Validate); the offset follows it. The GTID set is parsed
// as NewGTIDSet does. ParsePosition accepts some texts String never prints (a
// leading "+" or leading zeros in numbers, upper-case UUIDs and tags, unsorted
// or overlapping intervals); those parse to the same value as the canonical
// form. Errors wrap ErrInvalidPosition.
func ParsePosition(s string) (Position, error) {
	if s == zeroText {
		return Position{}, nil
	}
	if s == "" {
		return Position{}, invalidf("empty text; the zero position is %q", zeroText)
	}

	filePart, gtidPart := s, ""
	if hasGTIDPrefix(s) {
		filePart, gtidPart = "", s
	} else if i := strings.IndexByte(s, ' '); i >= 0 {
		filePart, gtidPart = s[:i], s[i+1:]
		if !hasGTIDPrefix(gtidPart) {
			return Position{}, invalidf("%q: want \"<file>:<offset>[ <flavor>-gtid=<set>]\"", s)
		}
	}

	var p Position
	if filePart != "" {
		i := strings.LastIndexByte(filePart, ':')
		if i < 0 {
			return Position{}, invalidf("%q: missing \":<offset>\" after the file name", s)
		}
		p.Name = filePart[:i]
		if err := validateName(p.Name); err != nil {
			return Position{}, invalidf("%q: %w", s, err)
		}
		off, err := strconv.ParseUint(filePart[i+1:], 10, 64)
		if err != nil {
			return Position{}, invalidf("%q: offset %q is not a decimal uint64", s, filePart[i+1:])
		}
		p.Offset = off
	}

	if gtidPart != "" {
		flavor, text, _ := strings.Cut(gtidPart, gtidSuffix)
		if strings.ContainsFunc(text, unicode.IsSpace) {
			return Position{}, invalidf("%q: whitespace in the GTID set", s)
		}
		set, err := parseGTIDSet(flavor, text)
		if err != nil {
			return Position{}, invalidf("%q: %w", s, err)
		}
		p.Flavor, p.GTIDSet = flavor, set
	}
	return p, nil
}

// NewGTIDSet parses a GTID set of the given flavour (FlavorMySQL or
// FlavorMariaDB) with go-mysql's mysql.ParseGTIDSet. The empty string gives
// an empty, non-nil set.
//
// For MariaDB it is stricter than go-mysql, which reads an empty element (as
// in "0-1-5,") as the GTID 0-0-0 and silently keeps only the last of several
// GTIDs of one domain: both are errors here. For MySQL it accepts what
// go-mysql does, including the ",\n" separators of the server's own output.
// Errors wrap ErrInvalidPosition.
func NewGTIDSet(flavor, s string) (mysql.GTIDSet, error) {
	set, err := parseGTIDSet(flavor, s)
	if err != nil {
		return nil, invalidf("%w", err)
	}
	return set, nil
}

// parseGTIDSet is NewGTIDSet with errors that do not wrap ErrInvalidPosition
// yet.
func parseGTIDSet(flavor, s string) (mysql.GTIDSet, error) {
	switch flavor {
	case FlavorMySQL:
	case FlavorMariaDB:
		if err := checkMariaDBSetText(s); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("unknown GTID flavor %q, want %q or %q", flavor, FlavorMySQL, FlavorMariaDB)
	}
	set, err := mysql.ParseGTIDSet(flavor, s)
	if err != nil {
		return nil, fmt.Errorf("%s GTID set %q: %w", flavor, s, err)
	}
	return set, nil
}

// checkMariaDBSetText rejects what go-mysql's MariaDB parser would accept but
// misread. It parses each element on its own, so that a repeated domain is
// caught before go-mysql's AddSet logs about it through the global slog
// logger.
func checkMariaDBSetText(s string) error {
	if s == "" {
		return nil
	}
	seen := make(map[uint32]bool)
	for elem := range strings.SplitSeq(s, ",") {
		if elem == "" {
			return fmt.Errorf("mariadb GTID set %q: empty element", s)
		}
		g, err := mysql.ParseMariadbGTID(elem)
		if err != nil {
			return fmt.Errorf("mariadb GTID set %q: %w", s, err)
		}
		if seen[g.DomainID] {
			return fmt.Errorf("mariadb GTID set %q: domain %d appears twice", s, g.DomainID)
		}
		seen[g.DomainID] = true
	}
	return nil
}

// String returns the text form that ParsePosition reads back; see
// ParsePosition for the grammar. The zero Position prints as "(none)". For a
// position that fails Validate the result is meant for humans only and may
// not parse.
func (p Position) String() string {
	if p.IsZero() {
		return zeroText
	}
	var b strings.Builder
	if p.Name != "" || p.Offset != 0 {
		b.WriteString(p.Name)
		b.WriteByte(':')
		b.WriteString(strconv.FormatUint(p.Offset, 10))
	}
	if p.GTIDSet != nil {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		flavor := p.Flavor
		if flavor == "" {
			flavor = flavorOf(p.GTIDSet)
		}
		b.WriteString(flavor)
		b.WriteString(gtidSuffix)
		b.WriteString(formatGTIDSet(p.GTIDSet))
	}
	return b.String()
}

// formatGTIDSet prints a set the way NewGTIDSet reads it back. MariaDB sets
// are printed here rather than by go-mysql, whose String drops the GTID 0-0-0
// (so a set holding only it would read back empty) and sorts domains as
// strings ("10-…" before "2-…"); here domains come in numeric order.
func formatGTIDSet(set mysql.GTIDSet) string {
	switch s := set.(type) {
	case *mysql.MariadbGTIDSet:
		if s == nil {
			return ""
		}
		gtids := make([]*mysql.MariadbGTID, 0, len(s.Sets))
		for _, g := range s.Sets {
			if g != nil {
				gtids = append(gtids, g)
			}
		}
		slices.SortFunc(gtids, func(a, b *mysql.MariadbGTID) int {
			return cmp.Compare(a.DomainID, b.DomainID)
		})
		var b strings.Builder
		for i, g := range gtids {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, "%d-%d-%d", g.DomainID, g.ServerID, g.SequenceNumber)
		}
		return b.String()
	case *mysql.MysqlGTIDSet:
		if s == nil {
			return ""
		}
	}
	return set.String()
}

// flavorOf names the flavour of a go-mysql set, or "" for other types.
func flavorOf(set mysql.GTIDSet) string {
	switch set.(type) {
	case *mysql.MysqlGTIDSet:
		return FlavorMySQL
	case *mysql.MariadbGTIDSet:
		return FlavorMariaDB
	}
	return ""
}

// Validate reports whether p can be written and read back unchanged, with an
// error wrapping ErrInvalidPosition that says why not. It holds when:
//
//   - Name is "" (then Offset is 0) or a valid file name: valid UTF-8, not "."
//     or "..", no whitespace or control characters (NUL included), no '/' or
//     ';', and not beginning with "mysql-gtid=" or "mariadb-gtid=";
//   - Flavor is "" and GTIDSet nil, or Flavor is FlavorMySQL with a
//     *mysql.MysqlGTIDSet, or FlavorMariaDB with a *mysql.MariadbGTIDSet;
//   - the set is in the normal form ParsePosition produces (for MySQL: every
//     UUID has intervals, tags are lower case, intervals are sorted, disjoint
//     and not adjacent, and start at 0 or more; for MariaDB: each GTID is
//     stored under its own domain). Sets built by go-mysql's parsers and
//     Add/Update methods are in that form.
//
// Every position ParsePosition or UnmarshalJSON returns is valid.
func (p Position) Validate() error {
	if err := p.validate(); err != nil {
		return invalidf("%w", err)
	}
	return nil
}

// validate is Validate with errors that do not wrap ErrInvalidPosition yet.
func (p Position) validate() error {
	if p.Name == "" {
		if p.Offset != 0 {
			return fmt.Errorf("offset %d without a file name", p.Offset)
		}
	} else if err := validateName(p.Name); err != nil {
		return err
	}
	switch {
	case p.GTIDSet == nil:
		if p.Flavor != "" {
			return fmt.Errorf("flavor %q without a GTID set", p.Flavor)
		}
		return nil
	case p.Flavor != FlavorMySQL && p.Flavor != FlavorMariaDB:
		return fmt.Errorf("unknown GTID flavor %q, want %q or %q", p.Flavor, FlavorMySQL, FlavorMariaDB)
	case flavorOf(p.GTIDSet) != p.Flavor:
		return fmt.Errorf("flavor %q with a GTID set of type %T", p.Flavor, p.GTIDSet)
	}
	if err := validateSet(p.GTIDSet); err != nil {
		return fmt.Errorf("%s GTID set: %w", p.Flavor, err)
	}
	return nil
}

// validateName checks a non-empty binlog file name; see Validate.
func validateName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("empty file name")
	case !utf8.ValidString(name):
		return fmt.Errorf("file name %q is not valid UTF-8", name)
	case name == "." || name == "..":
		return fmt.Errorf("file name %q is not a file", name)
	case hasGTIDPrefix(name):
		return fmt.Errorf("file name %q would read back as a GTID set", name)
	}
	if i := strings.IndexFunc(name, func(r rune) bool {
		return unicode.IsSpace(r) || unicode.IsControl(r) || r == '/' || r == ';'
	}); i >= 0 {
		r, _ := utf8.DecodeRuneInString(name[i:])
		return fmt.Errorf("file name %q contains %q: no whitespace, control characters, '/' or ';'", name, r)
	}
	return nil
}

// validateSet checks that set, of a go-mysql type, is in the normal form that
// its parser produces, so that printing and parsing it gives an equal set.
func validateSet(set mysql.GTIDSet) error {
	switch s := set.(type) {
	case *mysql.MariadbGTIDSet:
		if s == nil {
			return fmt.Errorf("nil *MariadbGTIDSet")
		}
		for domain, g := range s.Sets {
			if g == nil || g.DomainID != domain {
				return fmt.Errorf("domain %d holds %v", domain, g)
			}
		}
	case *mysql.MysqlGTIDSet:
		if s == nil {
			return fmt.Errorf("nil *MysqlGTIDSet")
		}
		for sid, tags := range *s {
			if len(tags) == 0 {
				return fmt.Errorf("%s has no intervals", sid)
			}
			for tag, ivs := range tags {
				if !validTag(tag.String()) {
					return fmt.Errorf("%s has invalid tag %q", sid, tag.String())
				}
				if len(ivs) == 0 {
					return fmt.Errorf("%s:%s has no intervals", sid, tag.String())
				}
				for i, iv := range ivs {
					if iv.Start < 0 || iv.Stop <= iv.Start || i > 0 && iv.Start <= ivs[i-1].Stop {
						return fmt.Errorf("%s:%s intervals are not normalized: %v", sid, tag.String(), ivs)
					}
				}
			}
		}
	}
	return nil
}

// validTag reports whether t is "" (no tag) or a normalized MySQL GTID tag:
// [a-z_][a-z0-9_]{0,31}.
func validTag(t string) bool {
	if len(t) > 32 {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if c != '_' && (c < 'a' || c > 'z') && (i == 0 || c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// IsZero reports whether p is the zero Position, "no position".
func (p Position) IsZero() bool {
	return p.Name == "" && p.Offset == 0 && p.Flavor == "" && p.GTIDSet == nil
}

// Clone returns a copy of p that shares nothing with it: the GTID set is
// deep-copied.
func (p Position) Clone() Position {
	if p.GTIDSet != nil {
		p.GTIDSet = p.GTIDSet.Clone()
	}
	return p
}

// Equal reports whether p and o have the same file name, offset and flavour
// and equal GTID sets. A nil set equals only a nil set; an empty set is not
// nil. For MariaDB, GTIDs are equal only with the same server id too.
func (p Position) Equal(o Position) bool {
	if p.Name != o.Name || p.Offset != o.Offset || p.Flavor != o.Flavor {
		return false
	}
	if p.GTIDSet == nil || o.GTIDSet == nil {
		return p.GTIDSet == nil && o.GTIDSet == nil
	}
	return p.GTIDSet.Equal(o.GTIDSet)
}

// Compare orders positions within one upstream's binlog: by file name, then
// by offset. It returns -1, 0 or +1 as p is before, at or after o, and ignores
// GTID sets, so Compare == 0 does not imply Equal. Positions from different
// upstreams (or across a failover) compare meaningfully only by CompareGTID.
//
// File names compare by base name, then by numeric sequence suffix, then as
// strings: the base is the part before the last '.' when only digits follow
// it (any number of them: mysql-bin.000009 < mysql-bin.000010 <
// mysql-bin.1000000), otherwise the whole name, and a name without a suffix
// sorts before the same base with one. The empty name (a GTID-only position)
// sorts first. This is a total order, consistent with ==.
func (p Position) Compare(o Position) int {
	if c := compareNames(p.Name, o.Name); c != 0 {
		return c
	}
	return cmp.Compare(p.Offset, o.Offset)
}

// compareNames implements Compare's order on file names.
func compareNames(a, b string) int {
	if a == b {
		return 0
	}
	aBase, aSeq, aHas := splitName(a)
	bBase, bSeq, bHas := splitName(b)
	if c := strings.Compare(aBase, bBase); c != 0 {
		return c
	}
	if aHas != bHas {
		if aHas {
			return 1
		}
		return -1
	}
	if aHas {
		if c := compareDecimal(aSeq, bSeq); c != 0 {
			return c
		}
	}
	// Same base and number, e.g. "x.010" and "x.10".
	return strings.Compare(a, b)
}

// splitName splits a binlog file name into its base and decimal sequence
// suffix; has is false, and base the whole name, when there is no suffix.
func splitName(n string) (base, seq string, has bool) {
	i := strings.LastIndexByte(n, '.')
	if i < 0 || i == len(n)-1 {
		return n, "", false
	}
	for _, c := range []byte(n[i+1:]) {
		if c < '0' || c > '9' {
			return n, "", false
		}
	}
	return n[:i], n[i+1:], true
}

// compareDecimal compares two strings of decimal digits by value, whatever
// their length.
func compareDecimal(a, b string) int {
	a = strings.TrimLeft(a, "0")
	b = strings.TrimLeft(b, "0")
	if c := cmp.Compare(len(a), len(b)); c != 0 {
		return c
	}
	return strings.Compare(a, b)
}

// CompareGTID orders p and o by their GTID sets: cmp is 0 when the sets are
// equal, -1 when o's set strictly contains p's (p is behind), +1 when p's set
// strictly contains o's. ok is false, and cmp 0, when either set is nil, the
// flavours differ, or neither set contains the other.
//
// For MariaDB, containment follows go-mysql: per domain, by sequence number
// alone. Two sets that differ only in server ids (0-1-5 and 0-2-5, say after
// a failover) therefore contain each other without being equal; CompareGTID
// reports them as not comparable.
func (p Position) CompareGTID(o Position) (cmp int, ok bool) {
	if p.GTIDSet == nil || o.GTIDSet == nil || p.Flavor != o.Flavor {
		return 0, false
	}
	if p.GTIDSet.Equal(o.GTIDSet) {
		return 0, true
	}
	pc, oc := p.GTIDSet.Contain(o.GTIDSet), o.GTIDSet.Contain(p.GTIDSet)
	switch {
	case pc && !oc:
		return 1, true
	case oc && !pc:
		return -1, true
	}
	return 0, false
}

// positionJSON is the JSON form of a Position. Part of the checkpoint format:
// never rename its fields.
type positionJSON struct {
	Name   string  `json:"name,omitempty"`
	Offset *uint64 `json:"offset,omitempty"`
	Flavor string  `json:"flavor,omitempty"`
	GTID   *string `json:"gtid,omitempty"`
}

// MarshalJSON writes p as an object such as
//
//	{"name":"mysql-bin.000003","offset":1234,"flavor":"mariadb","gtid":"0-1-100"}
//
// "name" and "offset" appear when Name is set (offset as an exact JSON
// number, up to 2^64-1), "flavor" and "gtid" when GTIDSet is non-nil ("gtid"
// may then be "", the empty set); the zero Position is {}. It fails, with an
// error wrapping ErrInvalidPosition, when p does not pass Validate, so what it
// writes always reads back.
func (p Position) MarshalJSON() ([]byte, error) {
	if err := p.validate(); err != nil {
		return nil, invalidf("%q: %w", p, err)
	}
	var j positionJSON
	if p.Name != "" {
		j.Name, j.Offset = p.Name, &p.Offset
	}
	if p.GTIDSet != nil {
		s := formatGTIDSet(p.GTIDSet)
		j.Flavor, j.GTID = p.Flavor, &s
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads the object MarshalJSON writes into p. "gtid" requires
// "flavor" and the other way round; unknown fields are ignored; JSON null
// leaves p unchanged. The result passes Validate; errors wrap
// ErrInvalidPosition and leave p unchanged.
func (p *Position) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		return nil
	}
	var j positionJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return invalidf("JSON %s: %w", data, err)
	}
	var q Position
	q.Name = j.Name
	if j.Offset != nil {
		q.Offset = *j.Offset
	}
	switch {
	case j.GTID != nil && j.Flavor == "":
		return invalidf("JSON %s: \"gtid\" without \"flavor\"", data)
	case j.GTID == nil && j.Flavor != "":
		return invalidf("JSON %s: \"flavor\" without \"gtid\"", data)
	case j.GTID != nil:
		set, err := parseGTIDSet(j.Flavor, *j.GTID)
		if err != nil {
			return invalidf("JSON %s: %w", data, err)
		}
		q.Flavor, q.GTIDSet = j.Flavor, set
	}
	if err := q.validate(); err != nil {
		return invalidf("JSON %s: %w", data, err)
	}
	*p = q
	return nil
}

// MarshalText returns String's text form, for text-based encoders (slog's
// TextHandler, flag.TextVar, TOML). JSON uses MarshalJSON's object form
// instead. It fails like MarshalJSON for a position that does not pass
// Validate.
func (p Position) MarshalText() ([]byte, error) {
	if err := p.validate(); err != nil {
		return nil, invalidf("%q: %w", p, err)
	}
	return []byte(p.String()), nil
}

// UnmarshalText parses text with ParsePosition into p; on error p is
// unchanged.
func (p *Position) UnmarshalText(text []byte) error {
	q, err := ParsePosition(string(text))
	if err != nil {
		return err
	}
	*p = q
	return nil
}

// hasGTIDPrefix reports whether s begins with "<flavor>-gtid=" for a known
// flavour.
func hasGTIDPrefix(s string) bool {
	return strings.HasPrefix(s, FlavorMySQL+gtidSuffix) || strings.HasPrefix(s, FlavorMariaDB+gtidSuffix)
}

// invalidf returns an error wrapping ErrInvalidPosition, with a stack trace.
func invalidf(format string, args ...any) error {
	return perrors.WithStack(fmt.Errorf("%w: "+format, append([]any{ErrInvalidPosition}, args...)...))
}
