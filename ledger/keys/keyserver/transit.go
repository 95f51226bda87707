package keyserver

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

// transit routes a request within a transit mount; rest is the path after
// the mount, such as "encrypt/name".
func (s *Server) transit(_ context.Context, m *mount, rest string, req *request) (*response, error) {
	seg := strings.Split(rest, "/")
	named := len(seg) >= 2 && validName(seg[1])
	only := func(op operation, h func() (*response, error)) (*response, error) {
		if req.op != op {
			return nil, errUnsupportedOp
		}
		return h()
	}
	switch {
	case rest == "keys" || rest == "keys/":
		return only(opList, func() (*response, error) { return s.listKeys(m) })
	case seg[0] == "keys" && len(seg) == 2 && named:
		switch req.op {
		case opUpdate:
			return s.createKey(m, seg[1], req.data)
		case opRead:
			return s.readKey(m, seg[1])
		case opDelete:
			return s.deleteKey(m, seg[1])
		}
		return nil, errUnsupportedOp
	case seg[0] == "keys" && len(seg) == 3 && named && seg[2] == "config":
		return only(opUpdate, func() (*response, error) { return s.configKey(m, seg[1], req.data) })
	case seg[0] == "keys" && len(seg) == 3 && named && seg[2] == "rotate":
		return only(opUpdate, func() (*response, error) { return s.rotateKey(m, seg[1], req.data) })
	case seg[0] == "encrypt" && len(seg) == 2 && named:
		return only(opUpdate, func() (*response, error) { return s.encrypt(m, seg[1], req.data) })
	case seg[0] == "decrypt" && len(seg) == 2 && named:
		return only(opUpdate, func() (*response, error) { return s.decrypt(m, seg[1], req.data) })
	case seg[0] == "datakey" && len(seg) == 3 && named && validName(seg[2]):
		return only(opUpdate, func() (*response, error) { return s.datakey(m, seg[1], seg[2], req.data) })
	case (seg[0] == "sign" || seg[0] == "verify") && named && (len(seg) == 2 || strings.Join(seg[2:], "/") != ""):
		urlAlgo := strings.Join(seg[2:], "/")
		if seg[0] == "sign" {
			return only(opUpdate, func() (*response, error) { return s.sign(m, seg[1], urlAlgo, req.data) })
		}
		return only(opUpdate, func() (*response, error) { return s.verify(m, seg[1], urlAlgo, req.data) })
	}
	return nil, errUnsupportedPth
}

// rlock returns the named key read-locked, or nil when there is none.
func (m *mount) rlock(name string) *key {
	m.mu.RLock()
	k := m.keys[name]
	m.mu.RUnlock()
	if k == nil {
		return nil
	}
	k.mu.RLock()
	if k.pol == nil {
		k.mu.RUnlock()
		return nil
	}
	return k
}

// lock returns the named key write-locked, or nil when there is none.
func (m *mount) lock(name string) *key {
	m.mu.RLock()
	k := m.keys[name]
	m.mu.RUnlock()
	if k == nil {
		return nil
	}
	k.mu.Lock()
	if k.pol == nil {
		k.mu.Unlock()
		return nil
	}
	return k
}

// ensureKey creates the named key unless it exists. The new key is put in
// the map write-locked before it is persisted, so the mount stays usable
// meanwhile and concurrent creators wait for, then find, the one key.
func (s *Server) ensureKey(m *mount, name, typ string, derived bool) (created bool, err error) {
	m.mu.Lock()
	if m.gone {
		m.mu.Unlock()
		return false, noRoute(m.info.Path)
	}
	if _, ok := m.keys[name]; ok {
		m.mu.Unlock()
		return false, nil
	}
	k := &key{}
	k.mu.Lock()
	m.keys[name] = k
	m.mu.Unlock()

	p := newPolicy(name, typ, derived, time.Now())
	if err := s.persistKey(m, p); err != nil {
		p.wipe()
		// k.pol stays nil, so whoever found k sees no key; k is unlocked
		// before m is locked, keeping the m-then-k lock order.
		k.mu.Unlock()
		m.mu.Lock()
		if m.keys[name] == k {
			delete(m.keys, name)
		}
		m.mu.Unlock()
		return false, err
	}
	k.pol = p
	k.mu.Unlock()
	return true, nil
}

// Key types that Vault has and this server does not offer.
var vaultOnlyTypes = map[string]bool{
	"ecdsa-p256": true, "ecdsa-p384": true, "ecdsa-p521": true,
	"rsa-2048": true, "rsa-3072": true, "rsa-4096": true,
	"hmac": true, "managed_key": true, "aes128-cmac": true, "aes192-cmac": true, "aes256-cmac": true,
	"ml-dsa": true, "hybrid": true, "slh-dsa": true,
}

func checkType(typ string) error {
	switch {
	case supportedType(typ):
		return nil
	case vaultOnlyTypes[typ]:
		return userError(fmt.Sprintf("key type %s is not supported by this key server (it offers aes128-gcm96, aes256-gcm96, chacha20-poly1305 and ed25519)", typ))
	}
	return userError(fmt.Sprintf("unknown key type %s", typ))
}

// zeroDuration reports whether a duration parameter (seconds or a Go
// duration string) is absent or zero.
func zeroDuration(f fields, name string) (bool, error) {
	v, ok := f[name]
	if !ok || v == nil {
		return true, nil
	}
	if n, ok := coerceInt(v); ok {
		return n == 0, nil
	}
	if str, ok := v.(string); ok {
		if d, err := time.ParseDuration(str); err == nil {
			return d == 0, nil
		}
	}
	return false, convErr(name, "a duration")
}

func (s *Server) createKey(m *mount, name string, f fields) (*response, error) {
	warnings := ignoredWarning(f.unknown("type", "derived", "convergent_encryption", "exportable", "allow_plaintext_backup", "auto_rotate_period", "key_size", "context"))
	typ, given, err := f.str("type")
	if err != nil {
		return nil, err
	}
	if !given {
		typ = typeAES256GCM96
	}
	derived, _, err := f.boolean("derived")
	if err != nil {
		return nil, err
	}
	convergent, _, err := f.boolean("convergent_encryption")
	if err != nil {
		return nil, err
	}
	exportable, _, err := f.boolean("exportable")
	if err != nil {
		return nil, err
	}
	backup, _, err := f.boolean("allow_plaintext_backup")
	if err != nil {
		return nil, err
	}
	keySize, _, err := f.integer("key_size")
	if err != nil {
		return nil, err
	}
	noRotate, err := zeroDuration(f, "auto_rotate_period")
	if err != nil {
		return nil, err
	}
	switch {
	case !noRotate:
		return nil, userError("automatic rotation is not supported by this key server; rotate with keys/:name/rotate")
	case !derived && convergent:
		return nil, userError("convergent encryption requires derivation to be enabled")
	}
	if err := checkType(typ); err != nil {
		return nil, err
	}
	switch {
	case keySize != 0:
		return nil, userError(fmt.Sprintf("key_size is not valid for algorithm %s", typ))
	case exportable:
		return nil, userError("exportable keys are not supported by this key server: key material never leaves it")
	case backup:
		return nil, userError("plaintext backup is not supported by this key server: key material never leaves it")
	case convergent:
		return nil, userError("convergent encryption is not supported by this key server")
	case derived && typ == typeEd25519:
		return nil, userError("derived ed25519 keys are not supported by this key server")
	}
	created, err := s.ensureKey(m, name, typ, derived)
	if err != nil {
		return nil, err
	}
	k := m.rlock(name)
	if k == nil {
		return nil, userError(fmt.Sprintf("key %s was deleted while it was being created", name))
	}
	defer k.mu.RUnlock()
	if !created {
		warnings = append(warnings, fmt.Sprintf("key %s already existed", name))
		s.log.Debug("transit key already existed", "mount", m.info.Path, "key", name)
	} else {
		s.log.Info("transit key created", "mount", m.info.Path, "key", name, "type", typ)
	}
	return &response{data: formatKey(k.pol), warnings: warnings}, nil
}

// formatKey renders a key as transit's keys/:name read does.
func formatKey(p *policy) map[string]any {
	d := map[string]any{
		"name":                   p.Name,
		"type":                   p.Type,
		"derived":                p.Derived,
		"deletion_allowed":       p.DeletionAllowed,
		"min_available_version":  0,
		"min_decryption_version": p.MinDecryptionVersion,
		"min_encryption_version": p.MinEncryptionVersion,
		"latest_version":         p.LatestVersion,
		"exportable":             false,
		"allow_plaintext_backup": false,
		"supports_encryption":    p.symmetric(),
		"supports_decryption":    p.symmetric(),
		"supports_signing":       p.signing(),
		"supports_derivation":    true,
		"auto_rotate_period":     0,
		"imported_key":           false,
	}
	if p.Derived {
		d["kdf"] = "hkdf_sha256"
		d["convergent_encryption"] = false
	}
	if p.symmetric() {
		keys := map[string]int64{}
		for ver, v := range p.Versions {
			keys[strconv.Itoa(ver)] = v.CreationTime.Unix()
		}
		d["keys"] = keys
		return d
	}
	keys := map[string]map[string]any{}
	for ver, v := range p.Versions {
		keys[strconv.Itoa(ver)] = map[string]any{
			"name":              "ed25519",
			"public_key":        base64.StdEncoding.EncodeToString(v.PublicKey),
			"certificate_chain": "",
			"creation_time":     v.CreationTime,
		}
	}
	d["keys"] = keys
	return d
}

func (s *Server) readKey(m *mount, name string) (*response, error) {
	k := m.rlock(name)
	if k == nil {
		return nil, errNotFound
	}
	defer k.mu.RUnlock()
	return &response{data: formatKey(k.pol)}, nil
}

func (s *Server) listKeys(m *mount) (*response, error) {
	m.mu.RLock()
	names := make([]string, 0, len(m.keys))
	for n := range m.keys {
		names = append(names, n)
	}
	m.mu.RUnlock()
	if len(names) == 0 {
		return nil, errNotFound // Vault answers an empty list with 404
	}
	sort.Strings(names)
	return &response{data: map[string]any{"keys": names}}, nil
}

// deleteKey shreds the key's file and forgets the key: the crypto-shredding
// that Custos relies on. Deletion must first be allowed by config.
func (s *Server) deleteKey(m *mount, name string) (*response, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := m.keys[name]
	if k == nil {
		return nil, userError(fmt.Sprintf("error deleting policy %s: could not delete key; not found", name))
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.pol == nil {
		return nil, userError(fmt.Sprintf("error deleting policy %s: could not delete key; not found", name))
	}
	if !k.pol.DeletionAllowed {
		return nil, userError(fmt.Sprintf("error deleting policy %s: deletion is not allowed for this key", name))
	}
	if err := s.store.shred(keyRel(m.info.UUID, s.store.keyFileName(name))); err != nil {
		return nil, fmt.Errorf("error deleting key %q: %w", name, err)
	}
	delete(m.keys, name)
	k.pol.wipe()
	k.pol = nil
	s.log.Info("transit key deleted and shredded", "mount", m.info.Path, "key", name)
	return nil, nil
}

func (s *Server) configKey(m *mount, name string, f fields) (*response, error) {
	warnings := ignoredWarning(f.unknown("min_decryption_version", "min_encryption_version", "deletion_allowed", "exportable", "allow_plaintext_backup", "auto_rotate_period"))
	k := m.lock(name)
	if k == nil {
		return nil, userError(fmt.Sprintf("no existing key named %s could be found", name))
	}
	defer k.mu.Unlock()
	p := k.pol.clone()
	changed := false

	if v, ok, err := f.integer("min_decryption_version"); err != nil {
		return nil, err
	} else if ok {
		if v < 0 {
			return nil, userError("min decryption version cannot be negative")
		}
		if v == 0 {
			v = 1
			warnings = append(warnings, "since Vault 0.3, transit key numbering starts at 1; forcing minimum to 1")
		}
		if v != p.MinDecryptionVersion {
			if v > p.LatestVersion {
				return nil, userError(fmt.Sprintf("cannot set min decryption version of %d, latest key version is %d", v, p.LatestVersion))
			}
			p.MinDecryptionVersion, changed = v, true
		}
	}
	if v, ok, err := f.integer("min_encryption_version"); err != nil {
		return nil, err
	} else if ok {
		if v < 0 {
			return nil, userError("min encryption version cannot be negative")
		}
		if v != p.MinEncryptionVersion {
			if v > p.LatestVersion {
				return nil, userError(fmt.Sprintf("cannot set min encryption version of %d, latest key version is %d", v, p.LatestVersion))
			}
			p.MinEncryptionVersion, changed = v, true
		}
	}
	if p.MinEncryptionVersion > 0 && p.MinEncryptionVersion < p.MinDecryptionVersion {
		return nil, userError(fmt.Sprintf("cannot set min encryption/decryption values; min encryption version of %d must be greater than or equal to min decryption version of %d", p.MinEncryptionVersion, p.MinDecryptionVersion))
	}
	if v, ok, err := f.boolean("deletion_allowed"); err != nil {
		return nil, err
	} else if ok && v != p.DeletionAllowed {
		p.DeletionAllowed, changed = v, true
	}
	if v, _, err := f.boolean("exportable"); err != nil {
		return nil, err
	} else if v {
		return nil, userError("exportable keys are not supported by this key server: key material never leaves it")
	}
	if v, _, err := f.boolean("allow_plaintext_backup"); err != nil {
		return nil, err
	} else if v {
		return nil, userError("plaintext backup is not supported by this key server: key material never leaves it")
	}
	if zero, err := zeroDuration(f, "auto_rotate_period"); err != nil {
		return nil, err
	} else if !zero {
		return nil, userError("automatic rotation is not supported by this key server; rotate with keys/:name/rotate")
	}
	if changed {
		if err := s.persistKey(m, p); err != nil {
			return nil, err
		}
		k.pol = p
	}
	return &response{data: formatKey(k.pol), warnings: warnings}, nil
}

func (s *Server) rotateKey(m *mount, name string, f fields) (*response, error) {
	warnings := ignoredWarning(f.unknown("managed_key_name", "managed_key_id"))
	k := m.lock(name)
	if k == nil {
		return nil, userError("key not found")
	}
	defer k.mu.Unlock()
	p := k.pol.clone()
	p.rotate(time.Now())
	if err := s.persistKey(m, p); err != nil {
		return nil, err
	}
	k.pol = p
	s.log.Info("transit key rotated", "mount", m.info.Path, "key", name, "latest_version", p.LatestVersion)
	return &response{data: formatKey(p), warnings: warnings}, nil
}

// batchOutcome tracks how a batch went, for transit's status rules.
type batchOutcome struct {
	successes, userErrs, internalErrs bool
}

func (o *batchOutcome) fail(err error) string {
	var ue userError
	if errors.As(err, &ue) {
		o.userErrs = true
	} else {
		o.internalErrs = true
	}
	return err.Error()
}

// finish applies transit's batch status rule: 400 if any item failed on
// its input, else 500 if any failed inside, unless some succeeded and the
// caller chose another code with partial_failure_response_code.
func (o *batchOutcome) finish(f fields, resp *response) (*response, error) {
	if !o.userErrs && !o.internalErrs {
		return resp, nil
	}
	code := http.StatusBadRequest
	if !o.userErrs {
		code = http.StatusInternalServerError
	}
	if v, ok, err := f.integer("partial_failure_response_code"); err != nil {
		return nil, err
	} else if ok && o.successes {
		if v < 1 || v > 599 {
			resp.warnings = append(resp.warnings, fmt.Sprintf("invalid HTTP response code override from partial_failure_response_code, reverting to %d", code))
		} else {
			code = v
		}
	}
	resp.status = code
	return resp, nil
}

// singleError turns the failure of a non-batch request into transit's
// answer: 400 with the message, or 500 for internal faults.
func singleError(msg string, o batchOutcome) error {
	if o.internalErrs {
		return errors.New(msg)
	}
	return userError(msg)
}

func b64(s string) ([]byte, error) { return base64.StdEncoding.DecodeString(s) }

// collectItems returns batch_input, or the request's own parameters as a
// batch of one. requiredMsg is the error when the single form lacks want.
func collectItems(f fields, want, requiredMsg string) ([]batchItem, bool, error) {
	if raw, ok := f["batch_input"]; ok && raw != nil {
		items, err := decodeBatch(raw)
		if err != nil {
			return nil, true, err
		}
		if len(items) == 0 {
			return nil, true, userError("missing batch input to process")
		}
		return items, true, nil
	}
	var it batchItem
	strs := map[string]*string{
		"plaintext": &it.Plaintext, "ciphertext": &it.Ciphertext, "input": &it.Input, "signature": &it.Signature,
		"context": &it.Context, "nonce": &it.Nonce, "associated_data": &it.AssociatedData,
	}
	for name, dst := range strs {
		v, ok, err := f.str(name)
		if err != nil {
			return nil, false, err
		}
		*dst = v
		switch name {
		case "plaintext":
			it.HasPlaintext = ok
		case "input":
			it.HasInput = ok
		case "signature":
			it.HasSignature = ok
		}
	}
	_, hmac := f["hmac"]
	_, cmac := f["cmac"]
	it.HasMAC = hmac || cmac
	v, _, err := f.integer("key_version")
	if err != nil {
		return nil, false, err
	}
	it.KeyVersion = v
	switch want {
	case "plaintext":
		if !it.HasPlaintext {
			return nil, false, userError(requiredMsg)
		}
	case "ciphertext":
		if it.Ciphertext == "" {
			return nil, false, userError(requiredMsg)
		}
	}
	return []batchItem{it}, false, nil
}

// checkContexts enforces transit's rule that context is given in every
// item or in none, and reports which.
func checkContexts(items []batchItem) (bool, error) {
	set := items[0].Context != ""
	for _, it := range items {
		if (it.Context != "") != set {
			return false, userError("context should be set either in all the request blocks or in none")
		}
	}
	return set, nil
}

type encryptResult struct {
	Ciphertext string `json:"ciphertext,omitempty"`
	KeyVersion int    `json:"key_version,omitempty"`
	Reference  string `json:"reference"`
	Error      string `json:"error,omitempty"`
}

// encryptKey finds the key for encrypt, creating it as transit's upsert
// does when it does not exist. The key is returned read-locked.
func (s *Server) encryptKey(m *mount, name string, f fields, derived bool) (*key, error) {
	if k := m.rlock(name); k != nil {
		return k, nil
	}
	typ, given, err := f.str("type")
	if err != nil {
		return nil, err
	}
	if !given {
		typ = typeAES256GCM96
	}
	convergent, _, err := f.boolean("convergent_encryption")
	if err != nil {
		return nil, err
	}
	if convergent && !derived {
		return nil, userError("convergent encryption requires derivation to be enabled, so context is required")
	}
	switch {
	case strings.HasPrefix(typ, "ecdsa-"):
		return nil, userError(fmt.Sprintf("key type %s not supported for this operation", typ))
	case typ == typeEd25519 || !supportedType(typ) && !vaultOnlyTypes[typ]:
		return nil, userError(fmt.Sprintf("unknown key type %s", typ))
	case !supportedType(typ):
		return nil, checkType(typ)
	case convergent:
		return nil, userError("convergent encryption is not supported by this key server")
	}
	created, err := s.ensureKey(m, name, typ, derived)
	if err != nil {
		return nil, err
	}
	if created {
		s.log.Info("transit key created on encrypt", "mount", m.info.Path, "key", name, "type", typ)
	}
	if k := m.rlock(name); k != nil {
		return k, nil
	}
	return nil, userError("encryption key not found")
}

func (s *Server) encrypt(m *mount, name string, f fields) (*response, error) {
	warnings := ignoredWarning(f.unknown("plaintext", "context", "nonce", "type", "convergent_encryption", "key_version",
		"associated_data", "batch_input", "partial_failure_response_code", "padding_scheme"))
	items, batch, err := collectItems(f, "plaintext", "missing plaintext to encrypt")
	if err != nil {
		return nil, err
	}
	contextSet, err := checkContexts(items)
	if err != nil {
		return nil, err
	}
	var o batchOutcome
	results := make([]encryptResult, len(items))
	plains := make([][]byte, len(items))
	contexts := make([][]byte, len(items))
	defer func() {
		for _, p := range plains {
			clear(p)
		}
	}()
	for i, it := range items {
		if batch && !it.HasPlaintext {
			results[i].Error = o.fail(userError(fmt.Sprintf("'[%d].plaintext' missing plaintext to encrypt", i)))
			continue
		}
		if plains[i], err = b64(it.Plaintext); err != nil {
			results[i].Error = o.fail(userError(err.Error()))
			continue
		}
		if contexts[i], err = b64(it.Context); err != nil {
			results[i].Error = o.fail(userError(err.Error()))
			continue
		}
		if _, err := b64(it.Nonce); err != nil {
			results[i].Error = o.fail(userError(err.Error()))
		}
	}
	k, err := s.encryptKey(m, name, f, contextSet)
	if err != nil {
		return nil, err
	}
	defer k.mu.RUnlock()
	for i, it := range items {
		results[i].Reference = it.Reference
		if results[i].Error != "" {
			continue
		}
		aad, err := itemAAD(i, it)
		if err != nil {
			results[i].Error = o.fail(err)
			continue
		}
		ct, ver, err := k.pol.encrypt(it.KeyVersion, contexts[i], aad, plains[i])
		if err != nil {
			results[i].Error = o.fail(err)
			continue
		}
		o.successes = true
		results[i].Ciphertext, results[i].KeyVersion = ct, ver
	}
	if batch {
		return o.finish(f, &response{data: map[string]any{"batch_results": results}, warnings: warnings})
	}
	if results[0].Error != "" {
		return nil, singleError(results[0].Error, o)
	}
	return &response{data: map[string]any{"ciphertext": results[0].Ciphertext, "key_version": results[0].KeyVersion}, warnings: warnings}, nil
}

type decryptResult struct {
	Plaintext string `json:"plaintext"`
	Error     string `json:"error,omitempty"`
	Reference string `json:"reference"`
}

func (s *Server) decrypt(m *mount, name string, f fields) (*response, error) {
	warnings := ignoredWarning(f.unknown("ciphertext", "context", "nonce", "associated_data", "batch_input", "partial_failure_response_code", "padding_scheme"))
	items, batch, err := collectItems(f, "ciphertext", "missing ciphertext to decrypt")
	if err != nil {
		return nil, err
	}
	if _, err := checkContexts(items); err != nil {
		return nil, err
	}
	var o batchOutcome
	results := make([]decryptResult, len(items))
	contexts := make([][]byte, len(items))
	for i, it := range items {
		if it.Ciphertext == "" {
			results[i].Error = o.fail(userError("missing ciphertext to decrypt"))
			continue
		}
		if contexts[i], err = b64(it.Context); err != nil {
			results[i].Error = o.fail(userError(err.Error()))
			continue
		}
		if _, err := b64(it.Nonce); err != nil {
			results[i].Error = o.fail(userError(err.Error()))
		}
	}
	k := m.rlock(name)
	if k == nil {
		return nil, userError("encryption key not found")
	}
	defer k.mu.RUnlock()
	for i, it := range items {
		results[i].Reference = it.Reference
		if results[i].Error != "" {
			continue
		}
		aad, err := itemAAD(i, it)
		if err != nil {
			results[i].Error = o.fail(err)
			continue
		}
		plain, err := k.pol.decrypt(contexts[i], aad, it.Ciphertext)
		if err != nil {
			results[i].Error = o.fail(err)
			continue
		}
		o.successes = true
		results[i].Plaintext = base64.StdEncoding.EncodeToString(plain)
		clear(plain)
	}
	if batch {
		return o.finish(f, &response{data: map[string]any{"batch_results": results}, warnings: warnings})
	}
	if results[0].Error != "" {
		return nil, singleError(results[0].Error, o)
	}
	return &response{data: map[string]any{"plaintext": results[0].Plaintext}, warnings: warnings}, nil
}

// datakey makes a random key of the asked size and returns it sealed by
// the named key, and in the clear too for the "plaintext" flavour.
func (s *Server) datakey(m *mount, flavour, name string, f fields) (*response, error) {
	warnings := ignoredWarning(f.unknown("context", "nonce", "bits", "key_version", "padding_scheme"))
	if flavour != "plaintext" && flavour != "wrapped" {
		return nil, userError("Invalid path, must be 'plaintext' or 'wrapped'")
	}
	ctxStr, _, err := f.str("context")
	if err != nil {
		return nil, err
	}
	context, err := b64(ctxStr)
	if err != nil {
		return nil, userError("failed to base64-decode context")
	}
	nonce, _, err := f.str("nonce")
	if err != nil {
		return nil, err
	}
	if _, err := b64(nonce); err != nil {
		return nil, userError("failed to base64-decode nonce")
	}
	ver, _, err := f.integer("key_version")
	if err != nil {
		return nil, err
	}
	k := m.rlock(name)
	if k == nil {
		return nil, userError("encryption key not found")
	}
	defer k.mu.RUnlock()
	bits, given, err := f.integer("bits")
	if err != nil {
		return nil, err
	}
	if !given {
		bits = 256
	}
	if bits != 128 && bits != 256 && bits != 512 {
		return nil, userError("invalid bit length")
	}
	if nonce != "" {
		return nil, userError(msgNonceNotAllowed)
	}
	dk := randomBytes(bits / 8)
	defer clear(dk)
	ct, used, err := k.pol.encrypt(ver, context, nil, dk)
	if err != nil {
		return nil, err
	}
	data := map[string]any{"ciphertext": ct, "key_version": used}
	if flavour == "plaintext" {
		data["plaintext"] = base64.StdEncoding.EncodeToString(dk)
	}
	return &response{data: data, warnings: warnings}, nil
}

// Hash algorithms transit accepts by name. Ed25519 signs the input itself
// and ignores them, except that Vault's community edition refuses sha2-512
// (Ed25519ph) for ed25519 keys.
var hashAlgorithms = map[string]bool{
	"none": true, "sha1": true, "sha2-224": true, "sha2-256": true, "sha2-384": true, "sha2-512": true,
	"sha3-224": true, "sha3-256": true, "sha3-384": true, "sha3-512": true,
}

// signOptions reads what sign and verify share: the hash algorithm (URL
// first, then hash_algorithm, then the deprecated algorithm) and the
// marshaling, reporting whether it is JWS.
func signOptions(f fields, urlAlgo string) (hash string, jws bool, err error) {
	hash = urlAlgo
	for _, name := range []string{"hash_algorithm", "algorithm"} {
		if hash != "" {
			break
		}
		if hash, _, err = f.str(name); err != nil {
			return "", false, err
		}
	}
	if hash == "" {
		hash = "sha2-256"
	}
	if !hashAlgorithms[hash] {
		return "", false, userError(fmt.Sprintf("invalid hash algorithm %q", hash))
	}
	marshaling, _, err := f.str("marshaling_algorithm")
	if err != nil {
		return "", false, err
	}
	switch marshaling {
	case "", "asn1":
	case "jws":
		jws = true
	default:
		return "", false, userError(fmt.Sprintf("invalid marshaling type %q", marshaling))
	}
	return hash, jws, nil
}

// ed25519Options reproduces Vault's refusal of the Ed25519 variants it
// does not offer in its community edition.
func ed25519Options(f fields, hash string) error {
	sigCtx, _, err := f.str("signature_context")
	if err != nil {
		return err
	}
	switch {
	case sigCtx != "":
		return userError("error generating Ed25519 options: signature context is not supported feature")
	case hash == "sha2-512":
		return userError("error generating Ed25519 options: hash algorithm of SHA2 512 is not supported feature")
	}
	return nil
}

var signFields = []string{"input", "context", "hash_algorithm", "algorithm", "key_version", "prehashed", "signature_algorithm",
	"marshaling_algorithm", "salt_length", "batch_input", "signature_context"}

type signResult struct {
	Signature  string `json:"signature,omitempty"`
	KeyVersion int    `json:"key_version"`
	Error      string `json:"error,omitempty"`
	Reference  string `json:"reference"`
}

func (s *Server) sign(m *mount, name, urlAlgo string, f fields) (*response, error) {
	warnings := ignoredWarning(f.unknown(signFields...))
	hash, jws, err := signOptions(f, urlAlgo)
	if err != nil {
		return nil, err
	}
	ver, _, err := f.integer("key_version")
	if err != nil {
		return nil, err
	}
	k := m.rlock(name)
	if k == nil {
		return nil, userError("signing key not found")
	}
	defer k.mu.RUnlock()
	if !k.pol.signing() {
		return nil, userError(fmt.Sprintf("key type %s does not support signing", k.pol.Type))
	}
	if hash == "none" {
		return nil, userError("hash_algorithm=none requires both prehashed=true and signature_algorithm=pkcs1v15")
	}
	items, batch, err := collectItems(f, "", "")
	if err != nil {
		return nil, err
	}
	optErr := ed25519Options(f, hash)
	results := make([]signResult, len(items))
	for i, it := range items {
		results[i].Reference = it.Reference
		input, msg := signingInput(it, batch, optErr)
		if msg != "" {
			results[i].Error = msg
			continue
		}
		sig, used, err := k.pol.sign(ver, input, jws)
		if err != nil {
			results[i].Error = err.Error()
			continue
		}
		results[i].Signature, results[i].KeyVersion = sig, used
	}
	// Transit answers a signing batch with 200 whatever its items' fate.
	if batch {
		return &response{data: map[string]any{"batch_results": results}, warnings: warnings}, nil
	}
	if results[0].Error != "" {
		return nil, userError(results[0].Error)
	}
	return &response{data: map[string]any{"signature": results[0].Signature, "key_version": results[0].KeyVersion}, warnings: warnings}, nil
}

type verifyResult struct {
	Valid     bool   `json:"valid"`
	Error     string `json:"error,omitempty"`
	Reference string `json:"reference"`
}

func (s *Server) verify(m *mount, name, urlAlgo string, f fields) (*response, error) {
	warnings := ignoredWarning(f.unknown(append([]string{"signature", "hmac", "cmac", "mac_length"}, signFields...)...))
	items, batch, err := collectItems(f, "", "")
	if err != nil {
		return nil, err
	}
	var sigs, macs, missing bool
	for _, it := range items {
		switch {
		case it.HasSignature:
			sigs = true
		case it.HasMAC:
			macs = true
		default:
			missing = true
		}
	}
	switch {
	case !batch && sigs && macs:
		return nil, userError("provide one of 'signature', 'hmac' or 'cmac'")
	case !batch && !sigs && !macs:
		return nil, userError("missing 'signature', 'hmac' or 'cmac' were given to verify")
	case sigs && macs:
		return nil, userError("elements of batch_input must all provide either 'signature', 'hmac' or 'cmac'")
	case macs:
		return nil, userError("HMAC and CMAC verification are not supported by this key server")
	case missing && sigs:
		return nil, userError("some elements of batch_input are missing 'signature'")
	case !sigs:
		return nil, userError("no batch_input elements have 'signature', 'hmac' or 'cmac'")
	}
	hash, jws, err := signOptions(f, urlAlgo)
	if err != nil {
		return nil, err
	}
	k := m.rlock(name)
	if k == nil {
		return nil, userError("signature verification key not found")
	}
	defer k.mu.RUnlock()
	if !k.pol.signing() {
		return nil, userError(fmt.Sprintf("key type %s does not support verification", k.pol.Type))
	}
	if hash == "none" {
		return nil, userError("hash_algorithm=none requires both prehashed=true and signature_algorithm=pkcs1v15")
	}
	optErr := ed25519Options(f, hash)
	results := make([]verifyResult, len(items))
	for i, it := range items {
		results[i].Reference = it.Reference
		input, msg := signingInput(it, batch, optErr)
		if msg != "" {
			results[i].Error = msg
			continue
		}
		valid, err := k.pol.verify(input, it.Signature, jws)
		if err != nil {
			results[i].Error = err.Error()
			continue
		}
		results[i].Valid = valid
	}
	if batch {
		return &response{data: map[string]any{"batch_results": results}, warnings: warnings}, nil
	}
	if results[0].Error != "" {
		return nil, userError(results[0].Error)
	}
	return &response{data: map[string]any{"valid": results[0].Valid}, warnings: warnings}, nil
}

// signingInput checks one sign or verify item the way Vault does and
// decodes its input; a non-empty message is that item's error.
func signingInput(it batchItem, batch bool, optErr error) ([]byte, string) {
	if batch && !it.HasInput {
		return nil, "missing input"
	}
	input, err := b64(it.Input)
	if err != nil {
		return nil, fmt.Sprintf("unable to decode input as base64: %s", err)
	}
	if _, err := b64(it.Context); err != nil {
		return nil, "failed to base64-decode context"
	}
	if optErr != nil {
		return nil, optErr.Error()
	}
	return input, ""
}

// itemAAD checks that an encrypt or decrypt item brings no nonce of its own
// and decodes its associated data, with Vault's messages.
func itemAAD(i int, it batchItem) ([]byte, error) {
	if it.Nonce != "" {
		return nil, userError(msgNonceNotAllowed)
	}
	aad, err := b64(it.AssociatedData)
	if err != nil {
		return nil, userError(fmt.Sprintf("'[%d].associated_data' could not be base64-decoded", i))
	}
	return aad, nil
}
