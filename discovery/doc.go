// Package discovery owns how berth nodes find each other and notice each
// other's failure: every node (manager or agent) is a memberlist gossip
// member, and the leader learns from it within about a second that a node
// has died. The DNS server that answers service names is the subpackage
// discovery/dns: a job of its own, sharing nothing with gossip.
//
// The package is a leaf below the manager and the agent: it must not import
// berth/deploy, berth/scheduler, berth/manager, berth/agent or berth/store.
// It reports what gossip observes (Events, Members); deciding that a node is
// down in the store, and handing the gossip key to joining nodes, belongs to
// its callers.
package discovery
