package saga_test

import (
	"context"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"github.com/distkit/distkit/saga"
)

// BenchmarkSaga measures sagas per second: three steps that do nothing,
// so the cost is the orchestrator and its log (8 appends per saga), with
// 1 and 64 sagas in flight. FileLog fsyncs every append; with 64 in
// flight, group commit shares the fsyncs.
func BenchmarkSaga(b *testing.B) {
	nop := func(context.Context, *saga.Exec) error { return nil }
	def := saga.Definition{Name: "three"}
	for _, name := range []string{"a", "b", "c"} {
		def.Steps = append(def.Steps, saga.Step{Name: name, Do: nop, Undo: nop})
	}
	logs := map[string]func(b *testing.B) saga.Log{
		"MemLog": func(*testing.B) saga.Log { return &saga.MemLog{} },
		"FileLog": func(b *testing.B) saga.Log {
			l, err := saga.OpenFileLog(filepath.Join(b.TempDir(), "log"))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { l.Close() })
			return l
		},
	}
	for _, logName := range []string{"MemLog", "FileLog"} {
		for _, workers := range []int{1, 64} {
			b.Run(logName+"/concurrent="+strconv.Itoa(workers), func(b *testing.B) {
				o := saga.New(logs[logName](b), saga.Config{})
				if err := o.Register(def); err != nil {
					b.Fatal(err)
				}
				ids := make(chan string)
				var wg sync.WaitGroup
				for range workers {
					wg.Go(func() {
						for id := range ids {
							if out, err := o.Run(context.Background(), "three", id, nil); out != saga.Committed {
								b.Error(out, err)
							}
						}
					})
				}
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					i++
					ids <- strconv.Itoa(i)
				}
				close(ids)
				wg.Wait()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sagas/s")
			})
		}
	}
}

func BenchmarkRecordCodec(b *testing.B) {
	r := saga.Record{Kind: saga.KindStepDone, Saga: "order-12345", Step: 2, Attempt: 1,
		Bag: []saga.Entry{{Key: "payment", Value: []byte("pay_8f14e45fceea167a")}}}
	data, _ := r.MarshalMsgpack()
	b.Run("Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = r.MarshalMsgpack()
		}
	})
	b.Run("Unmarshal", func(b *testing.B) {
		b.ReportAllocs()
		var got saga.Record
		for b.Loop() {
			if err := got.UnmarshalMsgpack(data); err != nil {
				b.Fatal(err)
			}
		}
	})
}
