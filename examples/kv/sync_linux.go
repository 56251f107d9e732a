package kv

import (
	"os"
	"syscall"
)

// syncData makes f's data durable with fdatasync, as bbolt does on
// Linux: the file's size and blocks do not change on a commit into a
// zero-filled segment, so no metadata needs writing.
func syncData(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			return err
		}
	}
}
