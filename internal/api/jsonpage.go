package api

import (
	"encoding/json"
	"io"
	"slices"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/danielgtaylor/huma/v2"

	"github.com/otter-ota/otter/internal/ota"
)

// jsonFormat is huma's JSON format (no HTML escaping, a newline after the
// value) except that the pages of jobs, devices and events, the lists that
// grow to 1,000,000 rows and that the console reads most, are appended by
// hand: encoding/json's reflection, its per-field MarshalJSON calls and
// its buffers were about a fifth of the server's CPU per page and most of
// its garbage. The bytes are the same (TestPageJSONMatchesEncodingJSON and
// FuzzPageJSON compare them), so the OpenAPI document and the clients see
// no change.
var jsonFormat = huma.Format{
	Marshal: func(w io.Writer, v any) error {
		bp := pageBuffers.Get().(*[]byte)
		b, ok := appendPageJSON((*bp)[:0], v)
		if !ok {
			pageBuffers.Put(bp)
			return huma.DefaultJSONFormat.Marshal(w, v)
		}
		_, err := w.Write(b)
		if cap(b) <= maxPooledPage {
			*bp = b
			pageBuffers.Put(bp)
		}
		return err
	},
	Unmarshal: json.Unmarshal,
}

// maxPooledPage bounds the buffers kept for the next page: a page of 1,000
// jobs with long messages is larger, and is not worth holding.
const maxPooledPage = 1 << 20

var pageBuffers = sync.Pool{New: func() any { return new([]byte) }}

// appendPageJSON appends v as encoding/json would, followed by a newline as
// json.Encoder writes, if v is a page this file encodes; ok is false for
// any other value, and for a time encoding/json refuses (a year outside
// 0-9999), so that the caller falls back to encoding/json and its error.
func appendPageJSON(b []byte, v any) (_ []byte, ok bool) {
	// The sizes are a little over a typical item's, so that a page is
	// written without growing its buffer.
	switch p := v.(type) {
	case Page[ota.Job]:
		return appendPage(b, p, 320, appendJob)
	case *Page[ota.Job]:
		return appendPage(b, *p, 320, appendJob)
	case Page[ota.Device]:
		return appendPage(b, p, 224, appendDevice)
	case *Page[ota.Device]:
		return appendPage(b, *p, 224, appendDevice)
	case Page[ota.Event]:
		return appendPage(b, p, 224, appendEvent)
	case *Page[ota.Event]:
		return appendPage(b, *p, 224, appendEvent)
	}
	return b, false
}

func appendPage[T any](b []byte, p Page[T], itemSize int, item func([]byte, *T) ([]byte, bool)) ([]byte, bool) {
	b = slices.Grow(b, 64+len(p.Items)*itemSize)
	b = append(b, `{"items":`...)
	if p.Items == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i := range p.Items {
			if i > 0 {
				b = append(b, ',')
			}
			var ok bool
			if b, ok = item(b, &p.Items[i]); !ok {
				return b, false
			}
		}
		b = append(b, ']')
	}
	b = append(b, `,"next":`...)
	b = appendJSONString(b, p.Next)
	return append(b, "}\n"...), true
}

// appendJob follows the field order and tags of ota.Job.
func appendJob(b []byte, j *ota.Job) ([]byte, bool) {
	b = append(b, `{"id":`...)
	b = strconv.AppendInt(b, j.ID, 10)
	b = append(b, `,"task_id":`...)
	b = strconv.AppendInt(b, j.TaskID, 10)
	b = append(b, `,"device":`...)
	b = appendJSONString(b, j.Device)
	b = append(b, `,"product":`...)
	b = appendJSONString(b, j.Product)
	b = append(b, `,"module":`...)
	b = appendJSONString(b, j.Module)
	b = append(b, `,"state":`...)
	b = appendJSONString(b, string(j.State))
	b = append(b, `,"percent":`...)
	b = strconv.AppendInt(b, int64(j.Percent), 10)
	b = append(b, `,"attempt":`...)
	b = strconv.AppendInt(b, int64(j.Attempt), 10)
	if j.Code != "" {
		b = append(b, `,"code":`...)
		b = appendJSONString(b, j.Code)
	}
	if j.Message != "" {
		b = append(b, `,"message":`...)
		b = appendJSONString(b, j.Message)
	}
	b = append(b, `,"phase":`...)
	b = strconv.AppendInt(b, int64(j.Phase.Number()), 10)
	if j.FromVersion != "" {
		b = append(b, `,"from_version":`...)
		b = appendJSONString(b, j.FromVersion)
	}
	b = append(b, `,"version":`...)
	b = appendJSONString(b, j.Version)
	ok := true
	b = append(b, `,"created_at":`...)
	b, ok = appendJSONTime(b, j.CreatedAt, ok)
	b = append(b, `,"updated":`...)
	b, ok = appendJSONTime(b, j.UpdatedAt, ok)
	b, ok = appendOptionalTime(b, `,"started_at":`, j.StartedAt, ok)
	b, ok = appendOptionalTime(b, `,"deadline":`, j.Deadline, ok)
	b, ok = appendOptionalTime(b, `,"next_attempt_at":`, j.NextAttemptAt, ok)
	b, ok = appendOptionalTime(b, `,"sent_at":`, j.SentAt, ok)
	return append(b, '}'), ok
}

// appendDevice follows the field order and tags of ota.Device.
func appendDevice(b []byte, d *ota.Device) ([]byte, bool) {
	b = append(b, `{"product":`...)
	b = appendJSONString(b, d.Product)
	b = append(b, `,"key":`...)
	b = appendJSONString(b, d.Key)
	b = append(b, `,"tags":`...)
	b = appendJSONMap(b, d.Tags)
	b = append(b, `,"versions":`...)
	b = appendJSONMap(b, d.Versions)
	b = append(b, `,"online":`...)
	b = strconv.AppendBool(b, d.Online)
	ok := true
	b = append(b, `,"last_seen":`...)
	if d.LastSeen == nil {
		b = append(b, "null"...)
	} else {
		b, ok = appendJSONTime(b, *d.LastSeen, ok)
	}
	b = append(b, `,"created_at":`...)
	b, ok = appendJSONTime(b, d.CreatedAt, ok)
	return append(b, '}'), ok
}

// appendEvent follows the field order and tags of ota.Event.
func appendEvent(b []byte, e *ota.Event) ([]byte, bool) {
	b = append(b, `{"id":`...)
	b = strconv.AppendInt(b, e.ID, 10)
	b = append(b, `,"at":`...)
	b, ok := appendJSONTime(b, e.At, true)
	b = append(b, `,"actor":`...)
	b = appendJSONString(b, e.Actor)
	b = append(b, `,"kind":`...)
	b = appendJSONString(b, e.Kind)
	b = append(b, `,"action":`...)
	b = appendJSONString(b, e.Action)
	if e.Product != "" {
		b = append(b, `,"product":`...)
		b = appendJSONString(b, e.Product)
	}
	if e.Device != "" {
		b = append(b, `,"device":`...)
		b = appendJSONString(b, e.Device)
	}
	if e.FirmwareID != 0 {
		b = append(b, `,"firmware_id":`...)
		b = strconv.AppendInt(b, e.FirmwareID, 10)
	}
	if e.TaskID != 0 {
		b = append(b, `,"task_id":`...)
		b = strconv.AppendInt(b, e.TaskID, 10)
	}
	if e.JobID != 0 {
		b = append(b, `,"job_id":`...)
		b = strconv.AppendInt(b, e.JobID, 10)
	}
	if e.Message != "" {
		b = append(b, `,"message":`...)
		b = appendJSONString(b, e.Message)
	}
	if len(e.Data) > 0 {
		b = append(b, `,"data":`...)
		b = appendJSONMap(b, e.Data)
	}
	return append(b, '}'), ok
}

func appendOptionalTime(b []byte, key string, t *time.Time, ok bool) ([]byte, bool) {
	if t == nil {
		return b, ok
	}
	b = append(b, key...)
	return appendJSONTime(b, *t, ok)
}

// appendJSONTime appends t as time.Time.MarshalJSON does; it reports false
// (keeping ok otherwise) for the years MarshalJSON refuses.
func appendJSONTime(b []byte, t time.Time, ok bool) ([]byte, bool) {
	if y := t.Year(); y < 0 || y > 9999 {
		return b, false
	}
	if _, off := t.Zone(); off <= -24*3600 || off >= 24*3600 {
		return b, false
	}
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"'), ok
}

// appendJSONMap appends m as encoding/json does: null when nil, the keys
// sorted.
func appendJSONMap(b []byte, m map[string]string) []byte {
	if m == nil {
		return append(b, "null"...)
	}
	b = append(b, '{')
	switch len(m) {
	case 0:
	case 1:
		for k, v := range m {
			b = appendJSONString(b, k)
			b = append(b, ':')
			b = appendJSONString(b, v)
		}
	default:
		var buf [16]string
		keys := buf[:0]
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, k)
			b = append(b, ':')
			b = appendJSONString(b, m[k])
		}
	}
	return append(b, '}')
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s quoted as encoding/json does without HTML
// escaping (huma's setting): control characters, quote and backslash
// escaped, invalid UTF-8 as U+FFFD, U+2028 and U+2029 escaped.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
