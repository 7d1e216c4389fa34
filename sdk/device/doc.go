// Package device is otter's Go device SDK: it connects a device to an otter
// server, reports the firmware versions it runs, and carries out upgrades
// safely.
//
// # What a device provides
//
// A device implements [Installer]: Versions tells what runs now; Write puts
// a verified image into the inactive slot; Activate makes that slot the
// next to boot; Reboot boots it. An A/B device maps these onto its two
// partitions and boot flag; a simulated device keeps them in memory.
//
// # Running a client
//
//	pub, err := device.ParsePublicKey(serverKey) // printed by the otter server
//	c, err := device.New(device.Config{
//		Broker:    "tls://otter.example.com:8883",
//		Product:   "thermostat",
//		Device:    "d1",
//		Secret:    secret, // shown once when the device was registered
//		PublicKey: pub,
//		Installer: installer,
//		StateFile: "/data/otter/state.json",
//	})
//	err = c.Run(ctx) // blocks until ctx ends
//
// Without Broker, the client uses the HTTP device API at HTTPBase and polls
// for upgrades every PollInterval.
//
// # What the client does
//
//   - It connects with the device's credentials and reconnects after any
//     loss with exponential backoff and full jitter (at most RetryCap), and
//     reports its versions (inform) at every connect.
//   - It receives upgrade commands (push mode) and offers (answers to
//     [Client.Request], request mode). Delivery is at least once: a job it
//     has or had is not started twice; a cancel stops a job that has not
//     begun to install.
//   - Before downloading it checks, against Config.PublicKey, the ed25519
//     signatures of the firmware manifest (product, module, version, size,
//     SHA-256) and of the command (those plus device, job, attempt, mode,
//     confirm flags, allow_downgrade, params). It refuses a command not
//     newer than the newest it took for the module (a replay), does not
//     reinstall the version the module runs, and refuses a version lower
//     than the running one or than the highest one it has run (kept in
//     StateFile) unless the signed command allows a downgrade. Versions
//     are ordered by [wire.OrderVersions], as on the server. It asks
//     Config.Confirm when the upgrade needs a confirmation and sends the
//     answer.
//   - It downloads to StateFile+".part", resuming with Range and If-Range
//     after an interruption, retrying with backoff, honouring Retry-After,
//     and reporting progress at most every 10 percent. A request slower
//     than Config.MinDownloadRate over a StallTimeout window is dropped and
//     resumed; the whole download must end by DownloadGrace plus the time
//     its size takes at that rate. It then checks the size and the SHA-256
//     before the Installer sees a byte.
//   - When the upgrade says confirm_install, it reports downloaded and asks
//     Config.ConfirmInstall before it installs; a decline is sent with its
//     reason and the downloaded file is deleted.
//   - It reports downloaded, installing and rebooting, calls Write,
//     Activate and Reboot, and records each step in StateFile first. When
//     the device comes back (Run again with the same StateFile), the client
//     reports the new versions; if the module still runs the old version,
//     it reports the failure rolled_back.
//
// Failures are reported to the server with the codes of package wire:
// download_failed, verify_failed, signature_invalid, install_failed,
// rolled_back, downgrade_refused and replay_refused.
//
// # Many devices in one process
//
// An idle MQTT client costs six goroutines and about 45 KB, most of it
// goroutine stacks (BenchmarkIdleClients); buffers exist only during a
// download. Pass one shared Config.HTTPClient to all clients, give each its
// own StateFile (or none, for simulated devices), and watch them through
// Config.OnEvent.
package device
