//go:build !linux

package kv

import "os"

// logSyncer makes the log's writes durable with the file's Sync.
type logSyncer struct{}

func newLogSyncer() *logSyncer { return &logSyncer{} }

// syncData makes f's written data durable.
func (*logSyncer) syncData(f *os.File) error { return f.Sync() }

// usesRing reports whether syncs go through an io_uring: never here.
func (*logSyncer) usesRing() bool { return false }

func (*logSyncer) close() error { return nil }
