package device_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"

	"github.com/otter-ota/otter/sdk/device"
	"github.com/otter-ota/otter/sdk/wire"
)

// flashInstaller sketches an A/B device: two partitions and a boot flag.
type flashInstaller struct {
	running map[string]string // module -> version, read from the active slot
}

func (f *flashInstaller) Versions(context.Context) (map[string]string, error) {
	return f.running, nil
}

func (f *flashInstaller) Write(_ context.Context, up wire.Upgrade, image io.Reader) error {
	slot, err := os.OpenFile("/dev/mmcblk0p3", os.O_WRONLY, 0) // the inactive partition
	if err != nil {
		return err
	}
	defer slot.Close()
	if _, err := io.Copy(slot, image); err != nil {
		return err
	}
	return slot.Sync()
}

func (f *flashInstaller) Activate(context.Context, wire.Upgrade) error {
	return os.WriteFile("/boot/next-slot", []byte("b\n"), 0o644) // read by the bootloader
}

func (f *flashInstaller) Reboot(context.Context, wire.Upgrade) error {
	return exec.Command("reboot").Run() // does not return on success
}

// A device connects over MQTT and carries out the upgrades the server
// pushes, until it is stopped.
func ExampleNew() {
	pub, err := device.ParsePublicKey("O2onvM62pC1io6jQKm8Nc2UyFXcd4kOmOsBIoYtZ2ik=")
	if err != nil {
		log.Fatal(err)
	}
	c, err := device.New(device.Config{
		Broker:    "tcp://127.0.0.1:1883",
		Product:   "thermostat",
		Device:    "d1",
		Secret:    os.Getenv("OTTER_SECRET"),
		PublicKey: pub,
		Installer: &flashInstaller{running: map[string]string{"default": "1.0.0"}},
		StateFile: "/data/otter/state.json",
		Logger:    slog.Default(),
		Confirm: func(_ context.Context, up wire.Upgrade) bool {
			return up.Params["kind"] != "major" // ask the user for major ones, say
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := c.Run(ctx); err != context.Canceled {
		log.Fatal(err)
	}
}

// In request mode the device asks; the server offers an upgrade or says
// there is none.
func ExampleClient_Request() {
	var c *device.Client // from device.New, with Run running
	up, err := c.Request(context.Background(), "default")
	switch {
	case err == nil:
		fmt.Println("installing", up.Version)
	case errors.Is(err, device.ErrNoUpgrade):
		fmt.Println("up to date")
	default:
		log.Print(err)
	}
}

func ExampleParsePublicKey() {
	pub, err := device.ParsePublicKey("3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29")
	fmt.Println(len(pub) == ed25519.PublicKeySize, err)
	// Output: true <nil>
}

// A device without the SDK verifies an upgrade with the standard library
// alone: rebuild the manifest from the upgrade message and check the
// signature over its SignedBytes.
func Example_verifyManifest() {
	up, err := wire.DecodeUpgrade([]byte(`{"job":"7","module":"default","version":"1.1.0","size":12,
		"sha256":"82cf02e4cd2a557d3f1ad35b4f0bf7158e4c2fab63e918c63825d3107269d31c",
		"signature":"AaiZn1BZRE+Iw/tYDOa76Apeu+0bkNMG0IAAwIRZ6ES4ylN2aPYZXo+ntsNYReVTX9LC2eEmwiCT0jGUhWQpDg==",
		"url":"https://otter.example.com/dl/7","confirm":false,"mode":"push","allow_downgrade":false}`))
	if err != nil {
		log.Fatal(err)
	}
	pub, _ := device.ParsePublicKey("O2onvM62pC1io6jQKm8Nc2UyFXcd4kOmOsBIoYtZ2ik=")
	fmt.Println(up.Manifest("thermostat").Verify(pub, up.Signature))
	fmt.Println(up.Manifest("other-product").Verify(pub, up.Signature))
	// Output:
	// true
	// false
}
