package cli

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/otter-ota/otter/internal/mqtt"
	"github.com/otter-ota/otter/internal/server"
)

// serveCommand returns `otter serve`: every flag also reads an OTTER_*
// environment variable so containers and systemd units need no arguments.
func (a *app) serveCommand() *cobra.Command {
	var sf serveFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the otter server (API, console, MQTT broker, rollout engine)",
		Long: `Run the otter server. With no flags it runs on embedded defaults: data in
./otter-data (SQLite, firmware files, signing key), HTTP on :8080 and the
embedded MQTT broker on :1883. It prints what the CLI needs as export lines:
OTTER_SERVER and, on first start, once every listener is bound, an admin
token (OTTER_TOKEN), shown only once. A lost admin token is replaced with
"otter token create --data DIR --role admin --name NAME", server stopped.

With --tls-cert and --tls-key, --http serves HTTPS (API, console, downloads).

Every flag can also be set by the environment variable shown in its help.`,
		Example: `  otter serve
  otter serve --mqtt :1884               # when another broker (e.g. Mosquitto) holds :1883
  OTTER_ADMIN_TOKEN=otr_secret otter serve --data /var/lib/otter
  otter serve --db postgres://otter@db/otter
  OTTER_BROKER_USERNAME=otter OTTER_BROKER_PASSWORD=... otter serve --db postgres://otter@db/otter --broker mqtts://broker.example.com:8883
  otter serve --http :8443 --tls-cert cert.pem --tls-key key.pem --public-url https://otter.example.com:8443
  AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... otter serve --db postgres://otter@db/otter \
      --blob 's3://firmware/otter?endpoint=https://s3.example.com&region=eu-west-1' --download-redirect`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageErrorf("serve takes no arguments, only flags (got %q)", args[0])
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := sf.check(); err != nil {
				return err
			}
			return runServe(cmd.Context(), sf.cfg, cmd)
		},
	}
	a.defineServeFlags(cmd, &sf)
	return cmd
}

// serveFlags holds the flags of `otter serve`: the Config, and the values
// parsed only once the command runs.
type serveFlags struct {
	cfg                                                server.Config
	maxSize, ttl, maxDownloads, maxPerDevice, enosSkew string
	secureErr                                          error // a bad OTTER_SECURE_COOKIES
	redirectErr                                        error // a bad OTTER_DOWNLOAD_REDIRECT
}

func (a *app) defineServeFlags(cmd *cobra.Command, sf *serveFlags) {
	f, cfg := cmd.Flags(), &sf.cfg
	secure, err := a.envBool("OTTER_SECURE_COOKIES")
	sf.secureErr = err
	redirect, err := a.envBool("OTTER_DOWNLOAD_REDIRECT")
	sf.redirectErr = err
	f.StringVar(&cfg.DataDir, "data", a.envOr("OTTER_DATA", server.DefaultDataDir), "data folder: SQLite database, firmware files, signing key (OTTER_DATA)")
	f.StringVar(&cfg.HTTPAddr, "http", a.envOr("OTTER_HTTP", server.DefaultHTTPAddr), "HTTP listen address: API, console, downloads (OTTER_HTTP)")
	f.StringVar(&cfg.MQTTAddr, "mqtt", a.envOr("OTTER_MQTT", server.DefaultMQTTAddr), "embedded MQTT broker listen address (OTTER_MQTT)")
	f.StringVar(&cfg.DBURL, "db", a.envOr("OTTER_DB", ""), "database URL: empty for SQLite in the data folder, postgres://... for PostgreSQL (OTTER_DB)")
	f.StringVar(&cfg.SigningKey, "signing-key", a.envOr("OTTER_SIGNING_KEY", ""), "ed25519 signing key file (PEM, PKCS#8); default: created in the data folder (OTTER_SIGNING_KEY)")
	f.StringVar(&cfg.MQTTTLSAddr, "mqtt-tls", a.envOr("OTTER_MQTT_TLS", ""), "MQTT over TLS listen address, e.g. :8883; needs --mqtt-cert and --mqtt-key (OTTER_MQTT_TLS)")
	f.StringVar(&cfg.MQTTCertFile, "mqtt-cert", a.envOr("OTTER_MQTT_CERT", ""), "TLS certificate (PEM) of the MQTT TLS listener (OTTER_MQTT_CERT)")
	f.StringVar(&cfg.MQTTKeyFile, "mqtt-key", a.envOr("OTTER_MQTT_KEY", ""), "TLS private key (PEM) of the MQTT TLS listener (OTTER_MQTT_KEY)")
	f.StringVar(&cfg.PublicURL, "public-url", a.envOr("OTTER_PUBLIC_URL", ""), "base URL devices reach this server's HTTP listener at, used in download URLs; default: derived from --http (OTTER_PUBLIC_URL)")
	f.StringVar(&cfg.AdvertiseURL, "advertise-url", a.envOr("OTTER_ADVERTISE_URL", ""), "with --db postgres://: the URL the other replicas reach this one's --http listener at, to forward what needs the scheduling replica; default: derived from --http (OTTER_ADVERTISE_URL)")
	f.StringVar(&cfg.PublicMQTT, "public-mqtt", a.envOr("OTTER_PUBLIC_MQTT", ""), "broker URL the server tells tools like the simulator, e.g. tcp://otter.example.com:1883; default: derived from --mqtt (OTTER_PUBLIC_MQTT)")
	f.StringVar(&cfg.TLSCertFile, "tls-cert", a.envOr("OTTER_TLS_CERT", ""), "TLS certificate (PEM, with its chain) to serve --http over HTTPS; needs --tls-key (OTTER_TLS_CERT)")
	f.StringVar(&cfg.TLSKeyFile, "tls-key", a.envOr("OTTER_TLS_KEY", ""), "TLS private key (PEM) of --tls-cert (OTTER_TLS_KEY)")
	f.StringVar(&cfg.DownloadAddr, "download-http", a.envOr("OTTER_DOWNLOAD_HTTP", ""), "listen address of a listener of its own for firmware downloads, e.g. :8081, served by a leaner HTTP server (fasthttp) at about half the CPU per download; "+
		"download URLs then lead there; HTTPS with --tls-cert too; default: downloads on --http (OTTER_DOWNLOAD_HTTP)")
	f.StringVar(&cfg.DownloadPublicURL, "download-public-url", a.envOr("OTTER_DOWNLOAD_PUBLIC_URL", ""), "with --download-http: base URL devices reach it at, used in download URLs; default: derived from --download-http (OTTER_DOWNLOAD_PUBLIC_URL)")
	f.StringVar(&sf.ttl, "download-ttl", a.envOr("OTTER_DOWNLOAD_TTL", "24h"), "how long a firmware download URL stays valid, e.g. 24h, 90m (OTTER_DOWNLOAD_TTL)")
	f.StringVar(&cfg.Blob, "blob", a.envOr("OTTER_BLOB", ""), "firmware storage: empty for files in the data folder, s3://bucket/prefix?endpoint=host:port&region=... "+
		"for S3-compatible storage with credentials from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; needs --db postgres:// (OTTER_BLOB)")
	f.BoolVar(&cfg.DownloadRedirect, "download-redirect", redirect, "with --blob s3://: redirect device downloads to short-lived presigned URLs of the store instead of proxying them (OTTER_DOWNLOAD_REDIRECT)")
	f.StringVar(&sf.maxSize, "max-firmware-size", a.envOr("OTTER_MAX_FIRMWARE_SIZE", "2GiB"), "largest firmware file accepted, e.g. 512MiB, 2GiB (OTTER_MAX_FIRMWARE_SIZE)")
	f.StringVar(&sf.maxDownloads, "max-downloads", a.envOr("OTTER_MAX_DOWNLOADS", strconv.Itoa(server.DefaultMaxDownloads)), "firmware downloads served at once; more are answered 503 with Retry-After (OTTER_MAX_DOWNLOADS)")
	f.StringVar(&sf.maxPerDevice, "mqtt-max-per-device", a.envOr("OTTER_MQTT_MAX_PER_DEVICE", strconv.Itoa(mqtt.DefaultMaxConnectionsPerDevice)), "MQTT connections one device may hold at once; more are refused at CONNECT (OTTER_MQTT_MAX_PER_DEVICE)")
	f.StringVar(&sf.enosSkew, "enos-clock-skew", a.envOr("OTTER_ENOS_CLOCK_SKEW", mqtt.DefaultEnOSClockSkew.String()), "how far the timestamp of an EnOS device login may be from the server's clock, either way (OTTER_ENOS_CLOCK_SKEW)")
	f.BoolVar(&cfg.SecureCookies, "secure-cookies", secure, "mark console cookies Secure: set it when a TLS proxy serves the console over HTTPS; with --tls-cert they always are (OTTER_SECURE_COOKIES)")
	f.StringVar(&cfg.Broker, "broker", a.envOr("OTTER_BROKER", ""), "external MQTT broker, mqtt://host:port or mqtts://host:port, instead of the embedded one; "+
		"credentials from OTTER_BROKER_USERNAME and OTTER_BROKER_PASSWORD or the URL; needs --db postgres:// (OTTER_BROKER)")
	f.StringVar(&cfg.BrokerCA, "broker-ca", a.envOr("OTTER_BROKER_CA", ""), "with --broker mqtts://: PEM file of the certificate authorities to trust for the broker instead of the system's, "+
		"for a certificate a private CA issued (OTTER_BROKER_CA)")
	f.StringVar(&cfg.BrokerClientID, "broker-client-id", a.envOr("OTTER_BROKER_CLIENT_ID", ""), "MQTT client id at --broker of the replica that schedules (only that one connects): "+
		"the same on every replica, so that the next one resumes the session (OTTER_BROKER_CLIENT_ID)")
	f.StringVar(&cfg.BrokerAdmin, "broker-admin", a.envOr("OTTER_BROKER_ADMIN", ""), "with --broker: dynsec keeps every device's account in Mosquitto's dynamic security plugin "+
		"(created, rotated, deleted with the device); empty leaves the broker's accounts to you (OTTER_BROKER_ADMIN)")
	cfg.BrokerUsername = a.env.Getenv("OTTER_BROKER_USERNAME")
	cfg.BrokerPassword = a.env.Getenv("OTTER_BROKER_PASSWORD")
	cfg.BrokerAuthSecret = a.env.Getenv("OTTER_BROKER_AUTH_SECRET")
	cfg.AdminToken = a.env.Getenv("OTTER_ADMIN_TOKEN")
	cfg.Getenv = a.env.Getenv
}

// check parses the flags that need it into the Config and refuses
// combinations that cannot work.
func (sf *serveFlags) check() error {
	cfg := &sf.cfg
	size, err := parseSize(sf.maxSize)
	if err != nil {
		return usageErrorf("--max-firmware-size: %v", err)
	}
	cfg.MaxFirmwareSize = size
	if cfg.DownloadTTL, err = time.ParseDuration(sf.ttl); err != nil || cfg.DownloadTTL <= 0 {
		return usageErrorf("--download-ttl %q: want a positive duration such as 24h or 90m", sf.ttl)
	}
	if cfg.MaxDownloads, err = strconv.Atoi(sf.maxDownloads); err != nil || cfg.MaxDownloads <= 0 {
		return usageErrorf("--max-downloads (OTTER_MAX_DOWNLOADS): %q is not a positive number", sf.maxDownloads)
	}
	if cfg.MQTTMaxPerDevice, err = strconv.Atoi(sf.maxPerDevice); err != nil || cfg.MQTTMaxPerDevice <= 0 {
		return usageErrorf("--mqtt-max-per-device (OTTER_MQTT_MAX_PER_DEVICE): %q is not a positive number", sf.maxPerDevice)
	}
	if cfg.EnOSClockSkew, err = time.ParseDuration(sf.enosSkew); err != nil || cfg.EnOSClockSkew <= 0 {
		return usageErrorf("--enos-clock-skew (OTTER_ENOS_CLOCK_SKEW) %q: want a positive duration such as 1h or 10m", sf.enosSkew)
	}
	if sf.secureErr != nil {
		return usageErrorf("OTTER_SECURE_COOKIES: %v", sf.secureErr)
	}
	if sf.redirectErr != nil {
		return usageErrorf("OTTER_DOWNLOAD_REDIRECT: %v", sf.redirectErr)
	}
	if (cfg.TLSCertFile == "") != (cfg.TLSKeyFile == "") {
		return usageErrorf("--tls-cert and --tls-key go together: give both or neither")
	}
	if (cfg.MQTTTLSAddr == "") != (cfg.MQTTCertFile == "" && cfg.MQTTKeyFile == "") || (cfg.MQTTCertFile == "") != (cfg.MQTTKeyFile == "") {
		return usageErrorf("--mqtt-tls, --mqtt-cert and --mqtt-key go together: give all three or none")
	}
	return nil
}

func runServe(ctx context.Context, cfg server.Config, cmd *cobra.Command) error {
	cfg.Logger = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	s, err := server.Start(ctx, cfg)
	if err != nil {
		return err
	}
	printStart(cmd.OutOrStdout(), s, cfg)
	werr := s.Wait(ctx)
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	if err := s.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shut down: %w", err)
	}
	return werr
}

func (a *app) envOr(name, fallback string) string {
	return cmp.Or(a.env.Getenv(name), fallback)
}

// envBool reads a boolean environment variable; unset is false.
func (a *app) envBool(name string) (bool, error) {
	v := a.env.Getenv(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%q is not a boolean: use true or false", v)
	}
	return b, nil
}

// parseSize reads a byte size such as 2GiB, 512MiB, 10MB or 1048576.
func parseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{
		{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
		{"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1},
	}
	mult := int64(1)
	num := s
	for _, u := range units {
		if len(s) > len(u.suffix) && s[len(s)-len(u.suffix):] == u.suffix {
			mult, num = u.mult, s[:len(s)-len(u.suffix)]
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("invalid size %q: use a positive number with an optional unit, e.g. 512MiB or 2GiB", s)
	}
	return n * mult, nil
}

// printStart tells the operator what the CLI needs: the server's URL and,
// at first start, the admin token, as lines to paste into a shell.
func printStart(w io.Writer, s *server.Server, cfg server.Config) {
	tok := s.AdminToken()
	switch {
	case tok != "" && cfg.AdminToken == "":
		fmt.Fprintf(w, "\nFirst start: created an admin token. It is shown only this once. For the CLI:\n\n"+
			"    export OTTER_SERVER=%s\n    export OTTER_TOKEN=%s\n\n", s.PublicURL(), tok)
	default:
		fmt.Fprintf(w, "\nFor the CLI:\n\n    export OTTER_SERVER=%s\n\n", s.PublicURL())
		if tok == "" {
			fmt.Fprintf(w, "No new admin token: the database has tokens. Lost them? Stop the server and run:\n"+
				"    otter token create %s --role admin --name NAME\n\n", recoveryFlags(cfg))
		}
	}
	fmt.Fprintf(w, "otter is running: %s (Ctrl-C to stop)\n", s.PublicURL())
}

// recoveryFlags names the database `otter token create` should open.
func recoveryFlags(cfg server.Config) string {
	if cfg.DBURL != "" {
		return "--db URL" // the URL may hold a password: not printed
	}
	return "--data " + cfg.DataDir
}
