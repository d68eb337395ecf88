package main

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/pflag"

	pb "berth/proto/berth/v1"
)

// registryAuthFlags send pull credentials for a service's image, as
// `docker service create --with-registry-auth` does. Managers store the
// password sealed and hand it only to the nodes that pull the image.
type registryAuthFlags struct {
	fromConfig bool   // --registry-auth: from the docker config
	user       string // --registry-user
	passStdin  bool   // --registry-password-stdin
	password   string // read from stdin by readPassword
}

func (f *registryAuthFlags) register(fs *pflag.FlagSet, update bool) {
	help := "send the credentials for the image's registry, from $DOCKER_CONFIG/config.json or ~/.docker/config.json (after 'docker login'), to the nodes that pull it"
	if update {
		help += "; without it the stored credentials stay, --registry-auth=false removes them"
	}
	fs.BoolVar(&f.fromConfig, "registry-auth", false, help)
	fs.StringVar(&f.user, "registry-user", "", "registry user to send instead of --registry-auth; the password comes from --registry-password-stdin")
	fs.BoolVar(&f.passStdin, "registry-password-stdin", false, "read the password of --registry-user from stdin")
}

// readPassword checks the flags' combination and reads the password from
// stdin when asked to; it runs once, before any request.
func (f *registryAuthFlags) readPassword(fs *pflag.FlagSet, stdin io.Reader) error {
	switch {
	case f.fromConfig && fs.Changed("registry-user"):
		return errors.New("--registry-auth and --registry-user: use one (--registry-auth reads the docker config; --registry-user takes the password from --registry-password-stdin)")
	case fs.Changed("registry-user") && f.user == "":
		return errors.New("--registry-user is empty: give the registry user name")
	case f.user != "" && !f.passStdin:
		return errors.New("--registry-user needs --registry-password-stdin: pipe the password in, e.g. `cat pass.txt | berth service create --registry-user USER --registry-password-stdin ...`")
	case f.passStdin && f.user == "":
		return errors.New("--registry-password-stdin needs --registry-user USER")
	case !f.passStdin:
		return nil
	}
	b, err := io.ReadAll(io.LimitReader(stdin, 1<<20))
	if err != nil {
		return fmt.Errorf("--registry-password-stdin: read stdin: %w", err)
	}
	f.password = strings.TrimRight(string(b), "\r\n")
	if f.password == "" {
		return errors.New("--registry-password-stdin: stdin is empty; pipe the registry password in")
	}
	return nil
}

// apply sets the credentials of c for its image's registry. On update
// (all false) credentials the user did not touch stay as read from the
// manager (server and user; the manager keeps the password), unless the
// image moved to another registry: they are dropped then, with a note.
func (f *registryAuthFlags) apply(fs *pflag.FlagSet, c *pb.ContainerSpec, keychain authn.Keychain, note io.Writer) error {
	switch {
	case f.user != "":
		reg, err := imageRegistry("--registry-user", c.GetImage())
		if err != nil {
			return err
		}
		c.RegistryAuth = &pb.RegistryAuth{Server: reg.RegistryStr(), Username: f.user, Password: f.password}
	case f.fromConfig:
		reg, err := imageRegistry("--registry-auth", c.GetImage())
		if err != nil {
			return err
		}
		if c.RegistryAuth, err = configAuth(keychain, reg); err != nil {
			return err
		}
	case fs.Changed("registry-auth"): // --registry-auth=false
		c.RegistryAuth = nil
	case c.GetRegistryAuth() != nil:
		reg, err := name.ParseReference(c.GetImage())
		if err == nil && reg.Context().RegistryStr() != c.GetRegistryAuth().GetServer() {
			fmt.Fprintf(note, "note: the credentials for %s are dropped: the image now comes from %s (pass --registry-auth to send credentials for it)\n",
				c.GetRegistryAuth().GetServer(), reg.Context().RegistryStr())
			c.RegistryAuth = nil
		}
	}
	return nil
}

func imageRegistry(flag, image string) (name.Registry, error) {
	r, err := name.ParseReference(image)
	if err != nil {
		return name.Registry{}, fmt.Errorf("%s: image %q is not an image reference (%v); use NAME[:TAG] or NAME@sha256:DIGEST", flag, image, err)
	}
	return r.Context().Registry, nil
}

// configAuth finds the credentials for reg in the docker config (also its
// credential helpers), as `docker login` left them.
func configAuth(keychain authn.Keychain, reg name.Registry) (*pb.RegistryAuth, error) {
	host := reg.RegistryStr()
	where := dockerConfigFile()
	a, err := keychain.Resolve(reg)
	if err != nil {
		return nil, fmt.Errorf("--registry-auth: read the credentials for %s from %s: %w", host, where, err)
	}
	cfg, err := a.Authorization()
	if err != nil {
		return nil, fmt.Errorf("--registry-auth: read the credentials for %s from %s: %w", host, where, err)
	}
	user, pass := cfg.Username, cfg.Password
	if user == "" && cfg.Auth != "" {
		if user, pass, err = decodeAuth(cfg.Auth); err != nil {
			return nil, fmt.Errorf("--registry-auth: the entry for %s in %s: %w", host, where, err)
		}
	}
	switch {
	case user != "" && pass != "":
		return &pb.RegistryAuth{Server: host, Username: user, Password: pass}, nil
	case cfg.IdentityToken != "" || cfg.RegistryToken != "":
		return nil, fmt.Errorf("--registry-auth: %s holds a token for %s, not a user and password; use --registry-user USER --registry-password-stdin instead", where, host)
	}
	return nil, fmt.Errorf("--registry-auth: no credentials for registry %s in %s; run `docker login %s` first, or use --registry-user USER --registry-password-stdin", host, where, host)
}

// decodeAuth splits a docker config "auth" value: base64 of user:password.
func decodeAuth(auth string) (user, pass string, err error) {
	b, err := base64.StdEncoding.DecodeString(auth)
	if err != nil {
		return "", "", fmt.Errorf(`"auth" is not base64 (%v); run docker login again`, err)
	}
	user, pass, ok := strings.Cut(string(b), ":")
	if !ok {
		return "", "", errors.New(`"auth" is not base64 of user:password; run docker login again`)
	}
	return user, pass, nil
}

// dockerConfigFile names the docker config for messages.
func dockerConfigFile() string {
	if d := os.Getenv("DOCKER_CONFIG"); d != "" {
		return filepath.Join(d, "config.json")
	}
	return "~/.docker/config.json"
}
