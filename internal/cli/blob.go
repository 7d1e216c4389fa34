package cli

import (
	"context"
	"fmt"
	"io"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/otter-ota/otter/internal/blob"
	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/server"
	"github.com/otter-ota/otter/internal/store"
)

func (a *app) blobCommand() *cobra.Command {
	return a.group("blob", "Manage firmware storage", a.blobMigrateCommand())
}

type migrateFlags struct {
	data, db, blob string
}

// blobMigrateCommand returns `otter blob migrate`: it copies the firmware
// files of a data folder into S3 storage, so a single-node otter can move
// to cluster mode.
func (a *app) blobMigrateCommand() *cobra.Command {
	var f migrateFlags
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Copy a data folder's firmware files into S3 storage (--blob s3://...)",
		Long: `Copy the file of every firmware in the database (--db, default the SQLite
database of --data) from the data folder's blobs/ into the store --blob
names, under the same keys, so the same database works with --blob.

Each file is hashed while it is copied and must have the size and SHA-256
the firmware was uploaded with; a file already in the store is read and
hashed, and left alone when it is right. Running it again copies only what
is missing or damaged. The data folder's files are left in place.

Credentials come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.`,
		Example: `  otter blob migrate --data /var/lib/otter --blob 's3://firmware/otter?endpoint=https://s3.example.com'
  otter blob migrate --data ./otter-data --db postgres://otter@db/otter --blob s3://firmware/otter`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !blob.IsS3URL(f.blob) {
				return usageErrorf("--blob: give the S3 store to copy into, s3://bucket/prefix?endpoint=host:port")
			}
			return a.migrateBlobs(cmd.Context(), f, cmd.OutOrStdout())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.data, "data", a.envOr("OTTER_DATA", server.DefaultDataDir), "data folder whose blobs/ holds the files (OTTER_DATA)")
	fl.StringVar(&f.db, "db", a.envOr("OTTER_DB", ""), "database listing the firmware: empty for the data folder's SQLite (OTTER_DB)")
	fl.StringVar(&f.blob, "blob", a.envOr("OTTER_BLOB", ""), "S3 store to copy into: s3://bucket/prefix?endpoint=host:port&region=... (OTTER_BLOB)")
	return cmd
}

// migrateTally counts what a migration did.
type migrateTally struct{ copied, there, replaced, failed int }

func (a *app) migrateBlobs(ctx context.Context, f migrateFlags, out io.Writer) error {
	src, dst, st, err := a.openMigration(ctx, f)
	if err != nil {
		return err
	}
	defer st.Close()
	fmt.Fprintf(out, "copying firmware files from %s to %s\n", src, dst)
	var t migrateTally
	page := store.Page{Limit: store.MaxPageSize}
	for {
		items, next, err := st.ListFirmware(ctx, store.FirmwareFilter{}, page)
		if err != nil {
			return fmt.Errorf("list firmware: %w", err)
		}
		for _, fw := range items {
			t.add(migrateOne(ctx, src, dst, fw, out))
		}
		if next == "" {
			break
		}
		page.After = next
	}
	fmt.Fprintf(out, "%d copied, %d already in the store, %d replaced, %d failed\n", t.copied, t.there, t.replaced, t.failed)
	if t.failed > 0 {
		return fmt.Errorf("%d firmware files could not be copied (see above); run the command again once fixed", t.failed)
	}
	fmt.Fprintf(out, "every firmware file is in the store; the data folder's files were left in place. Serve with --blob %s\n", f.blob)
	return nil
}

// openMigration opens the database, the source folder and the destination
// store (checked), in that order: a wrong --data is the likeliest mistake.
func (a *app) openMigration(ctx context.Context, f migrateFlags) (*blob.FS, blob.Opened, store.Store, error) {
	st, err := openDatabase(ctx, f.data, f.db)
	if err != nil {
		return nil, nil, nil, err
	}
	src, dst, err := a.openBlobStores(ctx, f)
	if err != nil {
		st.Close()
		return nil, nil, nil, err
	}
	return src, dst, st, nil
}

func (a *app) openBlobStores(ctx context.Context, f migrateFlags) (*blob.FS, blob.Opened, error) {
	src, err := blob.NewFS(filepath.Join(f.data, "blobs"))
	if err != nil {
		return nil, nil, err
	}
	dst, err := blob.Open(f.blob, "", a.env.Getenv)
	if err != nil {
		return nil, nil, err
	}
	if err := dst.Check(ctx); err != nil {
		return nil, nil, fmt.Errorf("--blob: %w", err)
	}
	return src, dst, nil
}

func migrateOne(ctx context.Context, src, dst blob.Store, fw ota.Firmware, out io.Writer) (blob.Copied, error) {
	name := fmt.Sprintf("firmware %d (%s/%s %s, %s, %s)", fw.ID, fw.Product, fw.Module, fw.Version,
		formatSize(fw.Size), fw.BlobKey)
	how, err := blob.Copy(ctx, src, dst, blob.File{Key: fw.BlobKey, Size: fw.Size, SHA256: fw.SHA256})
	switch {
	case err != nil:
		fmt.Fprintf(out, "FAILED   %s: %s\n", name, ota.ErrorMessage(err))
		if ota.ErrorCode(err) == ota.EINTERNAL {
			fmt.Fprintf(out, "         %v\n", err)
		}
	case how == blob.AlreadyThere:
		fmt.Fprintf(out, "present  %s: already in the store, hash verified\n", name)
	case how == blob.Replaced:
		fmt.Fprintf(out, "replaced %s: the store's copy was damaged\n", name)
	default:
		fmt.Fprintf(out, "copied   %s\n", name)
	}
	return how, err
}

func (t *migrateTally) add(how blob.Copied, err error) {
	switch {
	case err != nil:
		t.failed++
	case how == blob.AlreadyThere:
		t.there++
	case how == blob.Replaced:
		t.replaced++
	default:
		t.copied++
	}
}
