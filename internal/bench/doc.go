// Package bench measures a whole otter on one machine: RunFleet upgrades a
// fleet of simulated devices (the real SDK over real MQTT connections) with
// one push task, RunConnect holds many idle connections and reads the
// server's memory, and RunJobs measures how fast the engine starts jobs
// when only the store limits it. The server runs in a process of its own
// (Serve, started as `otter bench server`) so that its memory and CPU time
// are read apart from the devices', which run in `otter bench devices`
// processes (RunDevices) as the open-file limit requires. `otter bench`
// prints the reports; BENCHMARKS.md records them.
package bench
