package groups

import (
	"syscall"
	"unsafe"
)

// hugePageSize is the size of a transparent huge page on the platforms
// where the hint is given.
const hugePageSize = 2 << 20

// adviseHugePages asks the kernel to back the whole 2 MiB pages inside b
// with transparent huge pages, before anything is written to b. A fetched
// snapshot's buffer is fresh memory that is written in full at once; each
// 4 KiB page of it costs a fault on first touch, which on virtual machines
// whose host backs guest memory lazily costs tens of microseconds (80 MB:
// about 20 000 faults, half a second of CPU measured on the benchmark VM,
// about half that with the hint). Only a hint: errors are ignored, the
// contents do not change, and a kernel whose THP setting is "never" (or
// "always") ignores it.
func adviseHugePages(b []byte) {
	if len(b) < 2*hugePageSize {
		return
	}
	p := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	start := (p + hugePageSize - 1) &^ (hugePageSize - 1)
	end := (p + uintptr(len(b))) &^ (hugePageSize - 1)
	if end <= start {
		return
	}
	_ = syscall.Madvise(b[start-p:end-p], syscall.MADV_HUGEPAGE)
}
