package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"gopkg.in/yaml.v3"
)

// Config is dmsctl's configuration file: named contexts, one per cluster
// and identity, and the one in use. It lives at $DMSCTL_CONFIG, else
// $XDG_CONFIG_HOME/dmsctl/config.yaml, else ~/.config/dmsctl/config.yaml,
// and is written with mode 0600 because contexts may hold credentials.
type Config struct {
	CurrentContext string              `yaml:"current-context,omitempty"`
	Contexts       map[string]*Context `yaml:"contexts,omitempty"`
}

// Context says which dmsd to talk to, as whom and in which project.
type Context struct {
	// Addr is the gRPC address (host:port).
	Addr string `yaml:"addr,omitempty"`
	// HTTPAddr is the HTTP address, needed only to log in with a user and
	// password (the Keystone v3 endpoint issues the token).
	HTTPAddr string `yaml:"http-addr,omitempty"`
	Project  string `yaml:"project,omitempty"`
	Output   string `yaml:"output,omitempty"`
	// Token is sent as `authorization: Bearer`: a Keystone token or an API
	// token.
	Token string `yaml:"token,omitempty"`
	// User, Password and Account log in through the Keystone endpoint when
	// no token is given.
	User     string `yaml:"user,omitempty"`
	Password string `yaml:"password,omitempty"`
	Account  string `yaml:"account,omitempty"`
	// TLS: dial with TLS, trusting CAFile (else the system's roots).
	TLS                bool   `yaml:"tls,omitempty"`
	CAFile             string `yaml:"ca-file,omitempty"`
	InsecureSkipVerify bool   `yaml:"insecure-skip-verify,omitempty"`
}

// configPath is where the configuration file is.
func configPath() (string, error) {
	if p := os.Getenv("DMSCTL_CONFIG"); p != "" {
		return p, nil
	}
	dir := os.Getenv("XDG_CONFIG_HOME")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("no home directory for the configuration file (set DMSCTL_CONFIG): %w", err)
		}
		dir = filepath.Join(home, ".config")
	}
	return filepath.Join(dir, "dmsctl", "config.yaml"), nil
}

// loadConfig reads the configuration file; a missing file is an empty
// configuration.
func loadConfig() (*Config, string, error) {
	path, err := configPath()
	if err != nil {
		return nil, "", err
	}
	cfg := &Config{Contexts: map[string]*Context{}}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return cfg, path, nil
	}
	if err != nil {
		return nil, path, err
	}
	if err := yaml.Unmarshal(data, cfg); err != nil {
		return nil, path, usagef("configuration file %s: %v", path, err)
	}
	if cfg.Contexts == nil {
		cfg.Contexts = map[string]*Context{}
	}
	return cfg, path, nil
}

func (c *Config) save(path string) error {
	data, err := yaml.Marshal(c)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func (c *Config) names() []string {
	var out []string
	for name := range c.Contexts {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}
