//go:build !linux

package groups

// adviseHugePages is a no-op where transparent huge pages are not
// advised (see the Linux version).
func adviseHugePages([]byte) {}
