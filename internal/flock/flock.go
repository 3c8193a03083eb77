// Package flock takes exclusive, advisory file locks without waiting: the
// log stores of groups and the identity of the reference node hold one
// while they are in use, so that a second process (or a second store in
// this one) is refused at once instead of corrupting or fighting over
// them. The lock goes with the file's last descriptor: when the process
// ends, however it ends, the lock is released.
package flock

import (
	"errors"
	"os"
)

// ErrBusy is returned by Lock when another process, or another open file
// in this one, holds the lock.
var ErrBusy = errors.New("flock: locked by another process")

// TryLock takes an exclusive lock on f without waiting: busy when another
// process (or another open file of this one) holds it.
func TryLock(f *os.File) (busy bool, err error) { return tryLock(f) }

// Lock opens (creating it, mode 0600) the file at path and takes its
// lock; it fails with ErrBusy when the lock is held. Closing the returned
// file releases it.
func Lock(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	busy, err := tryLock(f)
	if err == nil && busy {
		err = ErrBusy
	}
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	return f, nil
}
