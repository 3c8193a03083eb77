//go:build !linux

package groups

import "os"

// fdatasync flushes f to stable storage: File.Sync where the platform has
// no fdatasync (on macOS it is F_FULLFSYNC, which also flushes the drive's
// cache).
func fdatasync(f *os.File) error { return f.Sync() }
