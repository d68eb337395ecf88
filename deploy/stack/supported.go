package stack

import "github.com/compose-spec/compose-go/v2/tree"

// supportedKeys are the Compose keys the translation maps, one dotted path
// pattern each ("*" any key, "[]" a list item). compose-go reports every
// key of a file matching none of them, so a key the specification gains
// later is warned about until it is mapped here and in the translation.
var supportedKeys = []string{
	"services",
	"services.*",
	"services.*.image",
	"services.*.command",
	"services.*.entrypoint",
	"services.*.environment",
	"services.*.environment.*",
	"services.*.env_file",
	"services.*.env_file.[].path",
	"services.*.env_file.[].required",
	"services.*.env_file.[].format",
	"services.*.labels",
	"services.*.labels.*",
	"services.*.profiles",
	"services.*.user",
	"services.*.working_dir",
	"services.*.hostname",
	"services.*.stop_grace_period",
	"services.*.stop_signal",
	"services.*.read_only",
	"services.*.tty",
	"services.*.ports",
	"services.*.ports.[].target",
	"services.*.ports.[].published",
	"services.*.ports.[].protocol",
	"services.*.ports.[].mode",
	"services.*.ports.[].name",
	"services.*.volumes",
	"services.*.volumes.[].type",
	"services.*.volumes.[].source",
	"services.*.volumes.[].target",
	"services.*.volumes.[].read_only",
	"services.*.volumes.[].volume",
	// compose-go sets create_host_path on every bind mount it reads; a
	// missing host path fails the task, as in Swarm.
	"services.*.volumes.[].bind",
	"services.*.volumes.[].bind.create_host_path",
	"services.*.volumes.[].tmpfs",
	"services.*.volumes.[].tmpfs.size",
	"services.*.healthcheck",
	"services.*.healthcheck.test",
	"services.*.healthcheck.interval",
	"services.*.healthcheck.timeout",
	"services.*.healthcheck.retries",
	"services.*.healthcheck.start_period",
	"services.*.healthcheck.start_interval",
	"services.*.healthcheck.disable",
	"services.*.networks",
	"services.*.networks.*",
	"services.*.networks.*.aliases",
	"services.*.secrets",
	"services.*.secrets.[].source",
	"services.*.secrets.[].target",
	"services.*.secrets.[].uid",
	"services.*.secrets.[].gid",
	"services.*.secrets.[].mode",
	"services.*.deploy",
	"services.*.deploy.mode",
	"services.*.deploy.replicas",
	"services.*.deploy.labels",
	"services.*.deploy.labels.*",
	"services.*.deploy.endpoint_mode",
	"services.*.deploy.resources",
	"services.*.deploy.resources.limits",
	"services.*.deploy.resources.limits.cpus",
	"services.*.deploy.resources.limits.memory",
	"services.*.deploy.resources.limits.pids",
	"services.*.deploy.resources.reservations",
	"services.*.deploy.resources.reservations.cpus",
	"services.*.deploy.resources.reservations.memory",
	"services.*.deploy.restart_policy",
	"services.*.deploy.restart_policy.condition",
	"services.*.deploy.restart_policy.delay",
	"services.*.deploy.restart_policy.max_attempts",
	"services.*.deploy.restart_policy.window",
	"services.*.deploy.placement",
	"services.*.deploy.placement.constraints",
	"services.*.deploy.placement.preferences",
	"services.*.deploy.placement.preferences.[].spread",
	"services.*.deploy.placement.max_replicas_per_node",
	"networks",
	"networks.*",
	"networks.*.name",
	"networks.*.driver",
	"networks.*.internal",
	"networks.*.attachable",
	"networks.*.labels",
	"networks.*.labels.*",
	"networks.*.external",
	"networks.*.ipam",
	"networks.*.ipam.config",
	"networks.*.ipam.config.[].subnet",
	"volumes",
	"volumes.*",
	"volumes.*.name",
	"volumes.*.external",
	"secrets",
	"secrets.*",
	"secrets.*.name",
	"secrets.*.file",
	"secrets.*.environment",
	"secrets.*.external",
	"secrets.*.labels",
	"secrets.*.labels.*",
	"services.*.configs",
	"services.*.configs.[].source",
	"services.*.configs.[].target",
	"services.*.configs.[].uid",
	"services.*.configs.[].gid",
	"services.*.configs.[].mode",
	"configs",
	"configs.*",
	"configs.*.name",
	"configs.*.file",
	"configs.*.environment",
	"configs.*.content",
	"configs.*.external",
	"configs.*.labels",
	"configs.*.labels.*",
}

// updateKeys are the keys of update_config and rollback_config.
var updateKeys = []string{"parallelism", "delay", "failure_action", "monitor", "max_failure_ratio", "order"}

// supported returns supportedKeys as compose-go's path patterns.
func supported() []tree.Path {
	out := make([]tree.Path, 0, len(supportedKeys)+2*len(updateKeys)+2)
	for _, k := range supportedKeys {
		out = append(out, tree.Path(k))
	}
	for _, section := range []string{"update_config", "rollback_config"} {
		base := "services.*.deploy." + section
		out = append(out, tree.Path(base))
		for _, k := range updateKeys {
			out = append(out, tree.Path(base+"."+k))
		}
	}
	return out
}
