package snapshot

import "strings"

// SplitKeys takes a table definition as SHOW CREATE TABLE writes it (one
// column, key or constraint per line, each indented by two spaces) and
// returns it without its plain secondary indexes (the "KEY" lines: neither
// primary, unique, full-text nor spatial), with those index definitions.
// An index is cheaper to build in one sorted pass over a filled table than
// row by row while the rows arrive. It returns create unchanged and no keys
// when the text is not in that form, when the table has a foreign key (an
// index may serve it), or when it has no such index.
func SplitKeys(create string) (string, []string) {
	lines := strings.Split(create, "\n")
	if len(lines) < 3 || !strings.HasPrefix(lines[0], "CREATE TABLE ") || !strings.HasSuffix(lines[0], " (") {
		return create, nil
	}
	end := -1
	for i := 1; i < len(lines); i++ {
		if strings.HasPrefix(lines[i], ")") {
			end = i
			break
		}
	}
	if end < 2 {
		return create, nil
	}
	var defs, keys []string
	for i, l := range lines[1:end] {
		if !strings.HasPrefix(l, "  ") || strings.HasPrefix(l, "   ") {
			return create, nil // not one definition per line
		}
		d := l[2:]
		if i < end-2 {
			var ok bool
			if d, ok = strings.CutSuffix(d, ","); !ok {
				return create, nil
			}
		} else if strings.HasSuffix(d, ",") {
			return create, nil
		}
		switch {
		case strings.HasPrefix(d, "CONSTRAINT ") && strings.Contains(d, " FOREIGN KEY "), strings.HasPrefix(d, "FOREIGN KEY "):
			return create, nil
		case strings.HasPrefix(d, "KEY `"):
			keys = append(keys, d)
		default:
			defs = append(defs, d)
		}
	}
	if len(keys) == 0 || len(defs) == 0 {
		return create, nil
	}
	var b strings.Builder
	b.WriteString(lines[0])
	b.WriteByte('\n')
	for i, d := range defs {
		b.WriteString("  ")
		b.WriteString(d)
		if i < len(defs)-1 {
			b.WriteByte(',')
		}
		b.WriteByte('\n')
	}
	b.WriteString(strings.Join(lines[end:], "\n"))
	return b.String(), keys
}
