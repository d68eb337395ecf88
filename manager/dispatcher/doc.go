// Package dispatcher is the manager's side of agent sessions: it serves
// pb.DispatcherServer on the leader. Each agent keeps one Session stream:
// the first message is the full set of tasks assigned to its node (and the
// data of the secrets and configs those tasks need, always before the
// tasks), later messages carry the changes the store's watch shows,
// coalesced over a short window. Heartbeats keep a node READY; a node whose heartbeats lapse
// or whose stream ends without a new one within the grace goes DOWN.
// UpdateTaskStatus applies the agents' task states, many agents' reports in
// one store write, and never moves a state backwards.
//
// AttachNetwork and DetachNetwork put a node's standalone containers
// (berth-agent run --network) on attachable networks: an attachment task
// of no service on the caller's node, which the address allocator gives
// its addresses and moves to ASSIGNED, and which then travels like a task
// (to its node) and like a one-task dnsrr service named after the
// container (to every node on its networks, for DNS and peers).
//
// The caller's node comes from its verified certificate (Config.Identify),
// never from a request. An agent sees only its own tasks and only the
// secrets and configs they reference. A task's registry password, sealed in the store,
// is opened into the copy of the task sent to its own node's agent and
// nowhere else.
//
// Sessions are served only while Run runs (the leader's term); followers
// refuse with codes.Unavailable and a *pb.WeightedPeer detail naming the
// leader. The package must not import the agent.
package dispatcher
