package keyserver

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"custos.dev/ledger/atomicfile"
)

// On-disk layout under the state directory (see docs/keys-devserver.md):
//
//	master.key             32 random bytes, 0600: the key that seals every *.enc / *.key file
//	root-token             the root token, 0600, plain text
//	lock                   flock'd while a Server has the directory open
//	state.enc              sealed JSON: cluster identity, token metadata, mount table
//	keys/<mount-uuid>/<h>.key  sealed JSON, one transit key each; h = HMAC(name)
const (
	masterKeyFile = "master.key"
	rootTokenFile = "root-token"
	lockFile      = "lock"
	stateFile     = "state.enc"
	keysDir       = "keys"
	keyFileExt    = ".key"
	tmpSuffix     = atomicfile.TempSuffix

	masterKeySize = 32
)

// blobMagic starts every sealed file, so a wrong file fails loudly.
var blobMagic = []byte("CKS1")

// ErrLocked reports that another Server, in this process or another, has
// the state directory open.
var ErrLocked = errors.New("keyserver: state directory is in use")

// ErrCorrupt reports state files that cannot be read back: a wrong or
// missing master key, or damaged files.
var ErrCorrupt = errors.New("keyserver: state is corrupt or sealed with another master key")

// store seals and persists files under dir. Every write is atomic: a
// temporary file in the same directory is written and fsynced, renamed over
// the target, and the directory fsynced, so a crash leaves either the old
// or the new file, never a torn one.
type store struct {
	dir     string
	seal    cipher.AEAD
	nameKey []byte
	lock    *os.File
}

func newStore(dir string, master []byte) (*store, error) {
	sealKey, err := hkdf.Key(sha256.New, master, nil, "custos keyserver: file sealing v1", 32)
	if err != nil {
		return nil, err
	}
	nameKey, err := hkdf.Key(sha256.New, master, nil, "custos keyserver: file names v1", 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(sealKey)
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &store{dir: dir, seal: gcm, nameKey: nameKey}, nil
}

// keyFileName names a key's file by a keyed hash of its name, so the
// directory listing reveals neither the names nor their number per name.
func (st *store) keyFileName(name string) string {
	m := hmac.New(sha256.New, st.nameKey)
	m.Write([]byte(name))
	return hex.EncodeToString(m.Sum(nil)) + keyFileExt
}

func keyRel(mountUUID, file string) string {
	return keysDir + "/" + mountUUID + "/" + file
}

// sealBlob encrypts plain with the file's relative path as associated data,
// which binds the content to its place: a key file copied over another
// name's file will not open.
func (st *store) sealBlob(rel string, plain []byte) []byte {
	nonce := randomBytes(st.seal.NonceSize())
	out := append(append([]byte{}, blobMagic...), nonce...)
	return st.seal.Seal(out, nonce, plain, []byte(rel))
}

func (st *store) openBlob(rel string, blob []byte) ([]byte, error) {
	ns := st.seal.NonceSize()
	if len(blob) < len(blobMagic)+ns || !bytes.Equal(blob[:len(blobMagic)], blobMagic) {
		return nil, fmt.Errorf("%w: %s is not a sealed file", ErrCorrupt, rel)
	}
	nonce := blob[len(blobMagic) : len(blobMagic)+ns]
	plain, err := st.seal.Open(nil, nonce, blob[len(blobMagic)+ns:], []byte(rel))
	if err != nil {
		return nil, fmt.Errorf("%w: %s does not open", ErrCorrupt, rel)
	}
	return plain, nil
}

func (st *store) writeSealed(rel string, plain []byte) error {
	return writeAtomic(filepath.Join(st.dir, filepath.FromSlash(rel)), st.sealBlob(rel, plain), 0o600)
}

// readSealed returns fs.ErrNotExist (wrapped) when the file is absent.
func (st *store) readSealed(rel string) ([]byte, error) {
	blob, err := os.ReadFile(filepath.Join(st.dir, filepath.FromSlash(rel)))
	if err != nil {
		return nil, err
	}
	return st.openBlob(rel, blob)
}

// shred overwrites a file with zeros, syncs, removes it and syncs its
// directory. On a copy-on-write or journaling file system the overwrite
// may not reach the old blocks; what protects them is that they were only
// ever written sealed under the master key.
func (st *store) shred(rel string) error {
	return shredFile(filepath.Join(st.dir, filepath.FromSlash(rel)))
}

func shredFile(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	info, err := f.Stat()
	if err == nil {
		_, err = f.WriteAt(make([]byte, info.Size()), 0)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("shred: %w", err)
	}
	if err := os.Remove(path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

// removeTemps shreds temporary files left by a write that crashed before
// its rename; they may hold sealed copies of keys deleted since.
func removeTemps(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), tmpSuffix) {
			if err := shredFile(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

func writeAtomic(path string, data []byte, perm os.FileMode) error {
	return atomicfile.Write(path, data, perm, atomicfile.OverwriteReplaced())
}

func syncDir(dir string) error { return atomicfile.SyncDir(dir) }

// mkdirSynced creates dir (and its parents) and syncs the parent so the
// new entry survives a crash.
func mkdirSynced(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return syncDir(filepath.Dir(dir))
}

// loadOrCreateMaster reads DIR/master.key, creating it when the directory
// holds no sealed state yet.
func loadOrCreateMaster(dir string) (key []byte, created bool, err error) {
	path := filepath.Join(dir, masterKeyFile)
	key, err = os.ReadFile(path)
	switch {
	case err == nil:
		if len(key) != masterKeySize {
			return nil, false, fmt.Errorf("%w: %s has the wrong length", ErrCorrupt, masterKeyFile)
		}
		return key, false, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, false, err
	}
	if hasSealedState(dir) {
		return nil, false, fmt.Errorf("%w: %s is missing but sealed state exists", ErrCorrupt, masterKeyFile)
	}
	key = randomBytes(masterKeySize)
	if err := writeAtomic(path, key, 0o600); err != nil {
		return nil, false, err
	}
	return key, true, nil
}

// hasSealedState reports whether dir holds a state file or key files: a
// directory that must not be given a fresh master key or a fresh mount
// table, which would orphan (and then shred) its keys.
func hasSealedState(dir string) bool {
	if _, err := os.Stat(filepath.Join(dir, stateFile)); err == nil {
		return true
	}
	mounts, _ := os.ReadDir(filepath.Join(dir, keysDir))
	for _, m := range mounts {
		if !m.IsDir() {
			return true
		}
		if files, _ := os.ReadDir(filepath.Join(dir, keysDir, m.Name())); len(files) > 0 {
			return true
		}
	}
	return false
}
