package wire

import (
	"encoding/json"
	"strconv"
)

// A fleet's devices send progress messages by the thousand a second, and
// encoding/json costs a server and a simulator several microseconds a
// message through reflection. The common message (plain strings, small
// numbers, the keys as Encode writes them) is therefore written and read
// by hand below; anything else goes through encoding/json, so both paths
// give the same bytes and the same values.

// encodeProgress writes m exactly as json.Marshal does, when its strings
// need no escaping.
func encodeProgress(m Progress) []byte {
	if !plain(m.Job) || !plain(string(m.State)) || !plain(m.Code) || !plain(m.Message) {
		b, err := json.Marshal(m)
		if err != nil { // strings and numbers always encode
			panic("wire: encode progress: " + err.Error())
		}
		return b
	}
	b := make([]byte, 0, 64+len(m.Job)+len(m.Code)+len(m.Message))
	b = append(append(append(b, `{"job":"`...), m.Job...), '"')
	if m.Attempt != 0 {
		b = strconv.AppendInt(append(b, `,"attempt":`...), int64(m.Attempt), 10)
	}
	b = append(append(append(b, `,"state":"`...), m.State...), '"')
	if m.Percent != 0 {
		b = strconv.AppendInt(append(b, `,"percent":`...), int64(m.Percent), 10)
	}
	if m.Code != "" {
		b = append(append(append(b, `,"code":"`...), m.Code...), '"')
	}
	if m.Message != "" {
		b = append(append(append(b, `,"message":"`...), m.Message...), '"')
	}
	return append(b, '}')
}

// plain reports whether json.Marshal writes s as it is: printable ASCII
// without the quote, the backslash and the characters it escapes for HTML.
func plain(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// parseProgress reads a progress message written as encodeProgress
// writes one: no space, each known key once and in lower case, plain
// strings, numbers without sign, fraction or leading zero. ok is false for
// anything else, which encoding/json then reads (and explains, if it is
// wrong); what parseProgress accepts, encoding/json reads the same way.
func parseProgress(b []byte) (m Progress, ok bool) {
	if len(b) < 2 || b[0] != '{' || b[len(b)-1] != '}' {
		return m, false
	}
	var seen [6]bool
	i := 1
	for i < len(b)-1 {
		if i > 1 {
			if b[i] != ',' {
				return m, false
			}
			i++
		}
		key, next, ok := plainString(b, i)
		if !ok || next >= len(b) || b[next] != ':' {
			return m, false
		}
		i = next + 1
		var field int
		switch key {
		case "job":
			field = 0
		case "attempt":
			field = 1
		case "state":
			field = 2
		case "percent":
			field = 3
		case "code":
			field = 4
		case "message":
			field = 5
		default:
			return m, false
		}
		if seen[field] {
			return m, false
		}
		seen[field] = true
		if field == 1 || field == 3 {
			n, next, ok := smallInt(b, i)
			if !ok {
				return m, false
			}
			if field == 1 {
				m.Attempt = n
			} else {
				m.Percent = n
			}
			i = next
			continue
		}
		s, next, ok := plainString(b, i)
		if !ok {
			return m, false
		}
		switch field {
		case 0:
			m.Job = s
		case 2:
			m.State = State(s)
		case 4:
			m.Code = s
		case 5:
			m.Message = s
		}
		i = next
	}
	return m, i == len(b)-1
}

// plainString reads a JSON string of plain characters at b[i] and returns
// it and the index after its closing quote.
func plainString(b []byte, i int) (string, int, bool) {
	if i >= len(b) || b[i] != '"' {
		return "", 0, false
	}
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return string(b[i+1 : j]), j + 1, true
		case c < 0x20 || c > 0x7e || c == '\\':
			return "", 0, false
		}
	}
	return "", 0, false
}

// smallInt reads a JSON number at b[i] that is 0 or a positive integer of
// at most 9 digits.
func smallInt(b []byte, i int) (int, int, bool) {
	j := i
	for j < len(b) && j-i < 10 && b[j] >= '0' && b[j] <= '9' {
		j++
	}
	if j == i || j-i > 9 || (b[i] == '0' && j-i > 1) {
		return 0, 0, false
	}
	if j < len(b) && (b[j] == '.' || b[j] == 'e' || b[j] == 'E') {
		return 0, 0, false
	}
	n, err := strconv.Atoi(string(b[i:j]))
	return n, j, err == nil
}
