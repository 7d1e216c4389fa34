package cli

import (
	"bytes"
	"strings"
	"testing"
)

func TestWriteColumnsAlignsFieldsByName(t *testing.T) {
	var b bytes.Buffer
	err := writeColumns(&b, []string{"single", "cluster"},
		[]field{{"devices", "10"}, {"CPU: server", "1 s"}},
		[]field{{"devices", "10"}, {"CPU: replica 1", "2 s"}, {"CPU: mosquitto", "3 s"}})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"                single  cluster",
		"devices         10      10",
		"CPU: server     1 s     -",
		"CPU: replica 1  -       2 s",
		"CPU: mosquitto  -       3 s",
	}
	if got := strings.Split(strings.TrimRight(b.String(), "\n"), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
