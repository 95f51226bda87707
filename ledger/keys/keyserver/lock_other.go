//go:build !unix

package keyserver

import "os"

// lockDir only creates the lock file where flock is unavailable; the
// single-process rule is then the operator's to keep.
func lockDir(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
}

func unlockDir(f *os.File) error {
	if f == nil {
		return nil
	}
	return f.Close()
}
