package grid

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// ErrBadNodeID is returned for a node ID that is not a valid name.
var ErrBadNodeID = errors.New("grid: bad node ID")

var nodeIDPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// ValidNodeID checks that id is 1–63 lowercase letters, digits or dashes,
// starting with a letter or digit: it is used in file names, certificates
// and job IDs.
func ValidNodeID(id string) error {
	if !nodeIDPattern.MatchString(id) {
		return fmt.Errorf("%w %q: use 1-63 lowercase letters, digits or '-', starting with a letter or digit", ErrBadNodeID, id)
	}
	return nil
}

// Identity is who a node is: its persistent ID and this start's incarnation.
type Identity struct {
	NodeID      string
	Incarnation uint64
}

// LoadIdentity reads the node ID from dir (creating a random one, or storing
// the given one, on first start) and bumps the stored incarnation. A given ID
// that differs from the stored one is refused: a data dir belongs to one node.
func LoadIdentity(dir, want string) (Identity, error) {
	if want != "" {
		if err := ValidNodeID(want); err != nil {
			return Identity{}, err
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Identity{}, fmt.Errorf("grid: create data dir: %w", err)
	}
	idPath := filepath.Join(dir, "node-id")
	id := ""
	switch b, err := os.ReadFile(idPath); {
	case err == nil:
		id = strings.TrimSpace(string(b))
		if err := ValidNodeID(id); err != nil {
			return Identity{}, fmt.Errorf("grid: %s is corrupt: %w", idPath, err)
		}
		if want != "" && want != id {
			return Identity{}, fmt.Errorf("%w: data dir %s belongs to node %q, not %q: use another data dir or drop --node-id", ErrBadNodeID, dir, id, want)
		}
	case errors.Is(err, os.ErrNotExist):
		id = want
		if id == "" {
			var b [4]byte
			if _, err := rand.Read(b[:]); err != nil {
				return Identity{}, err
			}
			id = "n" + hex.EncodeToString(b[:])
		}
		if err := writeFileSync(idPath, []byte(id+"\n")); err != nil {
			return Identity{}, fmt.Errorf("grid: store node ID: %w", err)
		}
	default:
		return Identity{}, fmt.Errorf("grid: read node ID: %w", err)
	}

	incPath := filepath.Join(dir, "incarnation")
	var inc uint64
	if b, err := os.ReadFile(incPath); err == nil {
		inc, err = strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			return Identity{}, fmt.Errorf("grid: %s is corrupt (%v): delete it to start from incarnation 1", incPath, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return Identity{}, fmt.Errorf("grid: read incarnation: %w", err)
	}
	inc++
	if err := writeFileSync(incPath, []byte(strconv.FormatUint(inc, 10)+"\n")); err != nil {
		return Identity{}, fmt.Errorf("grid: store incarnation: %w", err)
	}
	return Identity{NodeID: id, Incarnation: inc}, nil
}

// writeFileSync replaces path atomically and durably: temp file, fsync, rename.
func writeFileSync(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// ParseLabels parses "k=v,k2=v2" (or repeated flags joined by commas) into a
// map. Keys and values are non-empty and carry no '=' or ','.
func ParseLabels(s string) (map[string]string, error) {
	out := map[string]string{}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok || k == "" || v == "" {
			return nil, fmt.Errorf("grid: bad label %q: write labels as key=value, e.g. host=h1,zone=z1", kv)
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("grid: label %q given twice", k)
		}
		out[k] = v
	}
	return out, nil
}
