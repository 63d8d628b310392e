// `foak-worker launch`: starts the data-parallel ranks of ONE node as child
// processes, as torchrun does, and supervises them as a gang:
//
//   foak-worker launch [--nproc-per-node N|auto] [--nnodes M] [--node-rank R]
//                      [--master-addr HOST] [--master-port PORT] -- train --job FILE
//
// Each child is this binary with the arguments after "--" and torchrun's
// variables: RANK = node_rank * N + i, LOCAL_RANK = i, WORLD_SIZE = M * N,
// LOCAL_WORLD_SIZE = N, GROUP_RANK = node_rank, MASTER_ADDR, MASTER_PORT.
// The node's rank comes from --node-rank, else GROUP_RANK, NODE_RANK or
// JOB_COMPLETION_INDEX (a Kubernetes Indexed Job's pod index); N "auto" is
// the visible CUDA devices (1 without CUDA); one node picks a free port on
// 127.0.0.1 when no master is given.
//
// When a rank fails (non-zero exit or a signal) the others get SIGTERM, then
// SIGKILL after 10 s, and launch exits with that rank's code (128 + signal
// for a signal), so a pod or foakd sees the cause; SIGTERM or SIGINT to the
// launcher is passed on the same way. All ranks exiting 0 exits 0.
#ifndef FOAK_WORKER_CLI_LAUNCH_COMMAND_H_
#define FOAK_WORKER_CLI_LAUNCH_COMMAND_H_

namespace foak {

extern const char kLaunchUsage[];

// argv as main() got it, argv[1] == "launch". Returns the exit code.
int RunLaunch(int argc, char** argv);

}  // namespace foak

#endif  // FOAK_WORKER_CLI_LAUNCH_COMMAND_H_
