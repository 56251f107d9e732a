//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package saga

import (
	"os"
	"syscall"
)

// lockFile takes an exclusive advisory lock (flock) on f without
// waiting. The lock belongs to f's open file description: a second open
// of the same file, in this process or another, cannot take it while f
// is open, and closing f releases it.
func lockFile(f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err != syscall.EINTR {
			return err
		}
	}
}
