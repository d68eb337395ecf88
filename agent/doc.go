// Package agent is the node daemon: it keeps a session with the managers,
// converges the containers of this node to the tasks assigned to it,
// checks their health and reports their state. It drives agent/image and
// agent/runtime; it must not import manager, store, deploy or scheduler.
//
// The pieces, each owned by Agent.Run's errgroup:
//
//   - identity: with no certificate in DATA_DIR/certs the agent fetches
//     the cluster CA without trusting it, checks its hash against the join
//     token's pin, and has NodeCA sign a CSR over a connection that trusts
//     only that CA; a ca.Renewer renews the certificate before expiry.
//   - session: one Dispatcher.Session at a time over mutual TLS. The first
//     message must be full (the complete assignment set, session ID,
//     heartbeat period, managers); later ones carry changes or, with full
//     set, a resync. Heartbeats go at the period the manager sets. Any
//     error ends the session; the agent reconnects with jittered backoff
//     (100ms to 2s), trying a leader the error names (a WeightedPeer
//     status detail) first, then the managers the last session named, then
//     the --join addresses.
//   - worker: one controller per assigned task; a full set removes the
//     tasks it lacks and sweeps containers, root filesystems and secret
//     files no task owns (berth-agent run's, under DATA_DIR/run, are not
//     its own and stay).
//   - controller: a step function per task (swarmkit's exec.Do): preparing
//     (pull, rootfs, secrets), starting, running, then complete, failed,
//     shutdown or rejected; states only move forward. A container already
//     running for a task when the agent starts is adopted, not restarted.
//   - reporter: the latest status per task, sent in batches with
//     UpdateTaskStatus every 100ms, retried until a session takes them.
//   - overlay (overlay.go) and names (dns.go): the networks, peers and
//     service endpoints of the assignment stream become the node's bridges,
//     VXLAN entries and DNS records (discovery/dns, served on each
//     network's gateway); a task on a network gets a read-only
//     /etc/resolv.conf (DATA_DIR/resolv/<task>) naming that server.
//   - attachments (attach*.go) and the local API (localapi.go): LocalAgent
//     on DATA_DIR/agent.sock (root only) puts berth-agent run's containers
//     on attachable networks. Their attachment tasks (TaskSpec.attachment)
//     reach the node in the assignment stream but never a controller: the
//     container's namespace is wired with the overlay's Attach, a pidfd
//     watch ends the attachment with the container, and records in
//     DATA_DIR/attachments let a restarted daemon adopt them.
//   - gossip (gossip.go): the node's memberlist member, started on the
//     first key a session delivers (Config.OnGossip feeds Gossip.Update);
//     the managers take its verdicts on dead nodes.
//
// A promoted node also runs a manager beside its agent: package
// agent/promote, which alone may link the manager.
//
// A task's registry credentials (sent in clear, only to this node) go to
// its image pull and nowhere else: not to logs, statuses or disk.
//
// A task's container ID and snapshot key are the task ID. Its secrets and
// configs are files on a tmpfs at DATA_DIR/secrets/<task>/, bind-mounted
// read-only at /run/secrets/<file_name> (a secret) or at their absolute
// target (a config); a clean stop unmounts the tmpfs.
package agent
