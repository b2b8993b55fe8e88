package sdk

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Profile tells a client where a node listens and which credentials to use.
// `gridnode dev` and `gridnode agent` write one for the local user.
type Profile struct {
	Addr   string `json:"addr"`    // host:port of a node
	CA     string `json:"ca"`      // the cluster CA certificate (PEM file)
	Cert   string `json:"cert"`    // this client's certificate (PEM file)
	Key    string `json:"key"`     // this client's key (PEM file)
	NodeID string `json:"node_id"` // the node that wrote the profile, for people
}

// Environment variables that override the profile.
const (
	EnvProfile = "GRIDNODE_PROFILE" // path of the profile file
	EnvAddr    = "GRIDNODE_ADDR"    // node address, overriding the profile's
)

// DefaultProfilePath is $GRIDNODE_PROFILE, or profile.json in the user's
// config dir (e.g. ~/.config/gridnode/profile.json).
func DefaultProfilePath() string {
	if p := os.Getenv(EnvProfile); p != "" {
		return p
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		dir = os.TempDir()
	}
	return filepath.Join(dir, "gridnode", "profile.json")
}

// ErrNoProfile is returned when no profile exists where one was looked for.
var ErrNoProfile = errors.New("sdk: no profile")

// LoadProfile reads a profile; path "" means DefaultProfilePath. $GRIDNODE_ADDR
// overrides the address.
func LoadProfile(path string) (Profile, error) {
	if path == "" {
		path = DefaultProfilePath()
	}
	var p Profile
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return p, fmt.Errorf("%w at %s: start a node with `gridnode dev` (or `gridnode agent`), or pass --profile / set %s", ErrNoProfile, path, EnvProfile)
	}
	if err != nil {
		return p, fmt.Errorf("sdk: read profile: %w", err)
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return p, fmt.Errorf("sdk: profile %s is not valid JSON (%v): delete it and restart the node to write a new one", path, err)
	}
	if a := os.Getenv(EnvAddr); a != "" {
		p.Addr = a
	}
	// Relative credential paths are relative to the profile.
	for _, f := range []*string{&p.CA, &p.Cert, &p.Key} {
		if *f != "" && !filepath.IsAbs(*f) {
			*f = filepath.Join(filepath.Dir(path), *f)
		}
	}
	return p, nil
}

// Save writes the profile to path ("" means DefaultProfilePath), readable
// by the user only.
func (p Profile) Save(path string) error {
	if path == "" {
		path = DefaultProfilePath()
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("sdk: save profile: %w", err)
	}
	b, _ := json.MarshalIndent(p, "", "  ")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("sdk: save profile: %w", err)
	}
	return os.Rename(tmp, path)
}
