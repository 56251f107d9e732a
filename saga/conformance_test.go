package saga_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/distkit/distkit/saga"
	"github.com/distkit/distkit/saga/sagatest"
)

func TestMemLogConformance(t *testing.T) {
	sagatest.TestLog(t, func(t *testing.T) sagatest.Subject {
		return sagatest.Subject{Log: &saga.MemLog{}}
	})
}

func TestFileLogConformance(t *testing.T) {
	sagatest.TestLog(t, func(t *testing.T) sagatest.Subject {
		path := filepath.Join(t.TempDir(), "saga.log")
		open := func(t *testing.T) *saga.FileLog {
			l, err := saga.OpenFileLog(path)
			if err != nil {
				t.Fatalf("OpenFileLog: %v", err)
			}
			t.Cleanup(func() { l.Close() })
			return l
		}
		cur := open(t)
		return sagatest.Subject{
			Log: cur,
			Reopen: func(t *testing.T) saga.Log {
				cur.Close()
				cur = open(t)
				return cur
			},
			// A crash in the middle of the write: the record's frame
			// reaches the disk without its last bytes.
			Tear: func(t *testing.T, r saga.Record) {
				before, err := os.Stat(path)
				if err != nil {
					t.Fatal(err)
				}
				if err := cur.Append(context.Background(), r); err != nil {
					t.Fatalf("Append: %v", err)
				}
				cur.Close()
				after, err := os.Stat(path)
				if err != nil {
					t.Fatal(err)
				}
				torn := before.Size() + (after.Size()-before.Size())/2
				if err := os.Truncate(path, torn); err != nil {
					t.Fatal(err)
				}
			},
		}
	})
}
