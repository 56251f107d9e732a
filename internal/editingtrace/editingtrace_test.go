package editingtrace

import (
	"compress/gzip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// write stores body gzipped in a temporary file and returns its path.
func write(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "trace.json.gz")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	z := gzip.NewWriter(f)
	if _, err := z.Write([]byte(body)); err != nil {
		t.Fatal(err)
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

const small = `{"startContent": "", "endContent": "hey!",
 "txns": [{"time": "x", "patches": [[0, 0, "hello"]]},
          {"patches": [[1, 4, "ey"], [3, 0, "!"]]}]}`

func TestLoadAndApply(t *testing.T) {
	path := write(t, small)
	ps, end, err := Load(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []Patch{{0, 0, "hello"}, {1, 4, "ey"}, {3, 0, "!"}}
	if !slices.Equal(ps, want) || end != "hey!" {
		t.Fatalf("Load = %v, %q; want %v, %q", ps, end, want, "hey!")
	}
	var text []rune
	Apply(ps,
		func(pos, n int) { text = slices.Delete(text, pos, pos+n) },
		func(pos int, s string) { text = slices.Insert(text, pos, []rune(s)...) })
	if string(text) != end {
		t.Fatalf("replay gives %q, want %q", string(text), end)
	}

	prefix, _, err := Load(path, 2)
	if err != nil || !slices.Equal(prefix, want[:2]) {
		t.Fatalf("Load(limit 2) = %v, %v; want %v", prefix, err, want[:2])
	}
}

func TestLoadRefusesBadTraces(t *testing.T) {
	for _, body := range []string{
		`[]`,
		`{"txns": [{"patches": [[0, 0]]}]}`,
		`{"txns": [{"patches": [[-1, 0, "a"]]}]}`,
		`{"txns": [{"patches": [[0, -2, ""]]}]}`,
		`{"txns": [{"patches": [["0", 0, "a"]]}]}`,
		`{"txns": [{"patches": [[0, 0, "a"]]}`,
	} {
		if _, _, err := Load(write(t, body), 0); err == nil {
			t.Errorf("Load(%s) succeeded", body)
		}
	}
	if _, _, err := Load(filepath.Join(t.TempDir(), "missing"), 0); err == nil {
		t.Error("Load of a missing file succeeded")
	}
	path := filepath.Join(t.TempDir(), "plain")
	if err := os.WriteFile(path, []byte(small), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Load(path, 0); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("Load of an ungzipped file: %v", err)
	}
}
