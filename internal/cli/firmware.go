package cli

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/otter-ota/otter/client"
	"github.com/otter-ota/otter/sdk/wire"
)

func (a *app) firmwareCommand() *cobra.Command {
	return a.group("firmware", "Manage firmware",
		a.firmwareAddCommand(),
		a.firmwareListCommand(),
		a.firmwareGetCommand(),
		a.firmwareDeprecateCommand(),
		a.firmwareDeleteCommand(),
		a.firmwareDownloadCommand(),
	)
}

func (a *app) firmwareAddCommand() *cobra.Command {
	var (
		up     client.FirmwareUpload
		file   string
		params []string
	)
	cmd := &cobra.Command{
		Use:   "add --product P --version V --file F",
		Short: "Add a firmware version",
		Long: `Add a firmware version of a product's module, uploading its file. The server
hashes and signs it; firmware is immutable once added. With --sha256 the
server refuses (and keeps nothing) unless the file has that hash.
The module is ` + wire.KeyRule + `; versions are
` + wire.VersionRule + `.`,
		Example: `  otter firmware add --product demo --version 1.1.0 --file fw.bin
  otter firmware add --product demo --module modem --version 2.0.0 --file modem.bin \
      --from 1.0.0,1.0.1 --sha256 9f86d0... --param reboot=soft --verify-required`,
		Args: needArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlags(field{"--product", up.Product}, field{"--version", up.Version}, field{"--file", file}); err != nil {
				return err
			}
			var err error
			if up.Params, err = parsePairs("--param", params); err != nil {
				return err
			}
			return a.addFirmware(cmd, up, file)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&up.Product, "product", "", "product `P` (required)")
	fl.StringVar(&up.Version, "version", "", "version `V`, e.g. 1.1.0 (required)")
	fl.StringVarP(&file, "file", "f", "", "firmware file `F` (required; - reads standard input)")
	fl.StringVar(&up.Module, "module", "", "module `M` (default \"default\")")
	fl.StringSliceVar(&up.From, "from", nil, "versions `V1,V2` it may upgrade from (default: any lower version)")
	fl.StringVar(&up.SHA256, "sha256", "", "expected SHA-256 of the file, in `hex`")
	fl.BoolVar(&up.VerifyRequired, "verify-required", false, "require a successful verification task before batch tasks may use it")
	fl.BoolVar(&up.AllowDowngrade, "allow-downgrade", false, "let devices install it over a higher version")
	fl.StringArrayVar(&params, "param", nil, "parameter `key=value` passed to devices (repeatable)")
	fl.StringVar(&up.Description, "description", "", "free-form description (release notes)")
	return cmd
}

// requireFlags names the first required flag that was not given.
func requireFlags(flags ...field) error {
	for _, f := range flags {
		if f.value == "" {
			return usageErrorf("%s is required", f.name)
		}
	}
	return nil
}

func (a *app) addFirmware(cmd *cobra.Command, up client.FirmwareUpload, file string) error {
	r, size, closeFile, err := a.openFirmware(file)
	if err != nil {
		return err
	}
	defer closeFile()
	up.Size = size
	if bar := a.progressBar(size, "uploading"); bar != nil {
		up.Progress = func(n int64) { _ = bar.Set64(n) }
		defer bar.Close()
	}
	fw, err := a.client().UploadFirmware(cmd.Context(), up, r)
	if err != nil {
		return err
	}
	return a.render(fw, func(w io.Writer) error { return writeFirmware(w, fw) })
}

// openFirmware opens the file to upload and finds its size (0: unknown,
// for standard input).
func (a *app) openFirmware(name string) (io.Reader, int64, func(), error) {
	if name == "-" {
		return a.env.Stdin, 0, func() {}, nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, 0, nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, nil, err
	}
	if !st.Mode().IsRegular() {
		return f, 0, func() { f.Close() }, nil
	}
	return f, st.Size(), func() { f.Close() }, nil
}

// progressBar returns a byte progress bar on stderr when stderr is a
// terminal, and nil otherwise (logs and pipes get no bar noise). A size
// of 0 shows a spinner.
func (a *app) progressBar(size int64, what string) *progressbar.ProgressBar {
	f, ok := a.env.Stderr.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	if size <= 0 {
		size = -1
	}
	return progressbar.NewOptions64(size,
		progressbar.OptionSetWriter(f),
		progressbar.OptionSetDescription(what),
		progressbar.OptionShowBytes(true),
		progressbar.OptionShowTotalBytes(true),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
	)
}

func (a *app) firmwareListCommand() *cobra.Command {
	var (
		f     client.FirmwareFilter
		limit int
	)
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List firmware",
		Example: "  otter firmware list --product demo\n  otter firmware list --product demo --module modem -o json",
		Args:    needArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkLimit(limit); err != nil {
				return err
			}
			items, err := collect(a.client().AllFirmware(cmd.Context(), f, pageOptions(limit)), limit)
			if err != nil {
				return err
			}
			return a.render(items, func(w io.Writer) error { return writeFirmwareList(w, items, a.now()) })
		},
	}
	cmd.Flags().StringVar(&f.Product, "product", "", "only firmware of product `P`")
	cmd.Flags().StringVar(&f.Module, "module", "", "only firmware of module `M`")
	cmd.Flags().IntVar(&limit, "limit", 0, "print at most `N` firmware (default: all)")
	return cmd
}

func (a *app) firmwareGetCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "get ID",
		Short:   "Show a firmware",
		Example: "  otter firmware get 3",
		Args:    needArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID("firmware", args[0])
			if err != nil {
				return err
			}
			fw, err := a.client().Firmware(cmd.Context(), id)
			if err != nil {
				return err
			}
			return a.render(fw, func(w io.Writer) error { return writeFirmware(w, fw) })
		},
	}
}

func (a *app) firmwareDeprecateCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "deprecate ID",
		Short: "Retire a firmware: no new task may use it",
		Long: `Deprecate a firmware: no new task may use it; tasks already using it go on,
and its file stays downloadable for them. Only an active firmware is
deprecated; delete removes its file.`,
		Example: "  otter firmware deprecate 3",
		Args:    needArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID("firmware", args[0])
			if err != nil {
				return err
			}
			fw, err := a.client().DeprecateFirmware(cmd.Context(), id)
			if err != nil {
				return err
			}
			return a.render(fw, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "deprecated firmware %d (%s %s)\n", fw.ID, fw.Module, fw.Version)
				return err
			})
		},
	}
}

func (a *app) firmwareDeleteCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "delete ID",
		Short: "Delete a firmware's file, keeping its record",
		Long: `Delete a firmware's file. The server refuses while a task that is not
finished (scheduled, running or paused) uses the firmware: cancel it or wait
for it to end first. The firmware stays listed with status deleted, so the
tasks, jobs and events that used it still show its version and hash; no task
may use it again.`,
		Example: "  otter firmware delete 3",
		Args:    needArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID("firmware", args[0])
			if err != nil {
				return err
			}
			if err := a.client().DeleteFirmware(cmd.Context(), id); err != nil {
				return err
			}
			out := struct {
				ID      int64 `json:"id"`
				Deleted bool  `json:"deleted"`
			}{id, true}
			return a.render(out, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "deleted firmware %d\n", id)
				return err
			})
		},
	}
}

func (a *app) firmwareDownloadCommand() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "download ID -f OUT",
		Short: "Download a firmware file",
		Long: `Download the file of a firmware to OUT ("-" writes standard output) and check
its SHA-256. OUT appears only once the file is complete and checked.`,
		Example: "  otter firmware download 3 -f fw-1.1.0.bin\n  otter firmware download 3 -f - | sha256sum",
		Args:    needArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID("firmware", args[0])
			if err != nil {
				return err
			}
			if err := requireFlags(field{"-f", out}); err != nil {
				return err
			}
			if out == "-" && a.output == "json" {
				return usageErrorf("-f - writes the file to standard output: it cannot be combined with -o json")
			}
			return a.downloadFirmware(cmd, id, out)
		},
	}
	cmd.Flags().StringVarP(&out, "file", "f", "", "output file `OUT` (required; - for standard output)")
	return cmd
}

// downloadResult is what `firmware download -o json` prints.
type downloadResult struct {
	ID     int64  `json:"id"`
	File   string `json:"file"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

func (a *app) downloadFirmware(cmd *cobra.Command, id int64, out string) error {
	c := a.client()
	fw, err := c.Firmware(cmd.Context(), id)
	if err != nil {
		return err
	}
	var n int64
	if out == "-" {
		n, err = a.downloadChecked(cmd, fw, a.env.Stdout)
	} else {
		n, err = a.downloadToFile(cmd, fw, out)
	}
	if err != nil {
		return err
	}
	if out == "-" {
		return nil
	}
	res := downloadResult{ID: id, File: out, Size: n, SHA256: fw.SHA256}
	return a.render(res, func(w io.Writer) error {
		_, err := fmt.Fprintf(w, "saved firmware %d (%s/%s %s, %s) to %s\n", id, fw.Product, fw.Module, fw.Version, formatSize(n), out)
		return err
	})
}

// downloadToFile writes into a temporary file next to out and renames it
// only once the hash is checked, so that out is never a partial file.
func (a *app) downloadToFile(cmd *cobra.Command, fw *client.Firmware, out string) (int64, error) {
	tmp, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".part-*")
	if err != nil {
		return 0, err
	}
	defer os.Remove(tmp.Name()) // fails harmlessly after the rename
	n, err := a.downloadChecked(cmd, fw, tmp)
	if cerr := tmp.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return n, err
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return n, err
	}
	return n, nil
}

// downloadChecked downloads fw's file to w and checks its SHA-256.
func (a *app) downloadChecked(cmd *cobra.Command, fw *client.Firmware, w io.Writer) (int64, error) {
	h := sha256.New()
	dst := io.MultiWriter(w, h)
	if bar := a.progressBar(fw.Size, "downloading"); bar != nil {
		dst = io.MultiWriter(dst, bar)
		defer bar.Close()
	}
	n, err := a.client().DownloadFirmware(cmd.Context(), fw.ID, dst)
	if err != nil {
		return n, err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != fw.SHA256 {
		return n, fmt.Errorf("firmware %d: the downloaded file has SHA-256 %s, the server says %s: not saved", fw.ID, got, fw.SHA256)
	}
	return n, nil
}

func writeFirmwareList(w io.Writer, fs []client.Firmware, now time.Time) error {
	t := newTable(w, "ID", "PRODUCT", "MODULE", "VERSION", "STATUS", "SIZE", "SHA256", "FROM", "VERIFIED", "CREATED")
	for _, f := range fs {
		t.row(fmt.Sprint(f.ID), f.Product, f.Module, f.Version, f.Status, formatSize(f.Size), shortHash(f.SHA256),
			formatList(f.FromVersions), verification(&f), formatAge(f.CreatedAt, now))
	}
	return t.flush()
}

func writeFirmware(w io.Writer, f *client.Firmware) error {
	return writeFields(w, []field{
		{"id", fmt.Sprint(f.ID)},
		{"product", f.Product},
		{"module", f.Module},
		{"version", f.Version},
		{"status", f.Status},
		{"size", fmt.Sprintf("%d (%s)", f.Size, formatSize(f.Size))},
		{"sha256", f.SHA256},
		{"from", formatList(f.FromVersions)},
		{"params", formatPairs(f.Params)},
		{"verified", verification(f)},
		{"allow downgrade", yesNo(f.AllowDowngrade)},
		{"description", orDash(f.Description)},
		{"created", formatTime(f.CreatedAt)},
	})
}

// verification says whether batch tasks may use a firmware.
func verification(f *client.Firmware) string {
	switch {
	case f.VerifiedBy != 0:
		return fmt.Sprintf("yes (task %d)", f.VerifiedBy)
	case f.VerifyRequired:
		return "required"
	}
	return "not required"
}

// shortHash keeps the start of a hex hash, enough to tell files apart.
func shortHash(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return orDash(h)
}
