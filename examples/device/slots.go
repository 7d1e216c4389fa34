package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/otter-ota/otter/sdk/wire"
)

// slots is a file-based A/B device: slot-a.bin and slot-b.bin hold the two
// images, "active" names the slot the device runs and its version, and
// "next" names the slot to boot next, as a bootloader's flag would.
type slots struct {
	dir string
	// exitOnReboot makes Reboot end the process like a real reboot; run
	// the program again to "boot". Otherwise Reboot boots in place.
	exitOnReboot bool
}

// bootRecord is the content of "active" and "next": "a 1.0.0".
type bootRecord struct{ slot, version string }

// initialise creates a fresh device running version from slot a, unless
// the folder already holds one.
func (s *slots) initialise(version string) error {
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return err
	}
	if _, err := os.Stat(s.path("active")); !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.WriteFile(s.path("slot-a.bin"), []byte("factory image "+version+"\n"), 0o644); err != nil {
		return err
	}
	return s.writeRecord("active", bootRecord{"a", version})
}

// boot does what the bootloader does at power-on: switch to the slot
// "next" names, once.
func (s *slots) boot() error {
	next, err := s.readRecord("next")
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := os.Rename(s.path("next"), s.path("active")); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "boot: running slot %s, version %s\n", next.slot, next.version)
	return nil
}

func (s *slots) Versions(context.Context) (map[string]string, error) {
	active, err := s.readRecord("active")
	if err != nil {
		return nil, err
	}
	return map[string]string{"default": active.version}, nil
}

// Write copies the verified image into the slot the device does not run.
func (s *slots) Write(_ context.Context, up wire.Upgrade, image io.Reader) error {
	if up.Module != "default" {
		return fmt.Errorf("this example device has only the module default, not %q", up.Module)
	}
	target, err := s.inactive()
	if err != nil {
		return err
	}
	tmp := s.path("slot-" + target + ".bin.tmp")
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, image); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, s.path("slot-"+target+".bin"))
}

// Activate points "next" at the freshly written slot.
func (s *slots) Activate(_ context.Context, up wire.Upgrade) error {
	target, err := s.inactive()
	if err != nil {
		return err
	}
	return s.writeRecord("next", bootRecord{target, up.Version})
}

// Reboot ends the process (the supervisor, or the user, starts it again)
// or boots in place.
func (s *slots) Reboot(context.Context, wire.Upgrade) error {
	if s.exitOnReboot {
		fmt.Fprintln(os.Stderr, "rebooting: run the program again to boot the new slot")
		os.Exit(0)
	}
	return s.boot()
}

func (s *slots) inactive() (string, error) {
	active, err := s.readRecord("active")
	if err != nil {
		return "", err
	}
	if active.slot == "a" {
		return "b", nil
	}
	return "a", nil
}

func (s *slots) path(name string) string { return filepath.Join(s.dir, name) }

func (s *slots) readRecord(name string) (bootRecord, error) {
	b, err := os.ReadFile(s.path(name))
	if err != nil {
		return bootRecord{}, err
	}
	slot, version, ok := strings.Cut(strings.TrimSpace(string(b)), " ")
	if !ok || (slot != "a" && slot != "b") || version == "" {
		return bootRecord{}, fmt.Errorf("%s: want \"a VERSION\" or \"b VERSION\", got %q", s.path(name), b)
	}
	return bootRecord{slot, version}, nil
}

// writeRecord replaces a record atomically, as a boot flag must change.
func (s *slots) writeRecord(name string, r bootRecord) error {
	tmp := s.path(name + ".tmp")
	if err := os.WriteFile(tmp, []byte(r.slot+" "+r.version+"\n"), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, s.path(name))
}
