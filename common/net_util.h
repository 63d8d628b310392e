// Small socket helpers shared by foakd, foak-worker and the tests.
#ifndef FOAK_COMMON_NET_UTIL_H_
#define FOAK_COMMON_NET_UTIL_H_

namespace foak {

// A TCP port free right now on the loopback (the kernel's pick), e.g. for a
// rendezvous MASTER_PORT; 0 when none could be had (the user then fails
// clearly on port 0).
int FreeLoopbackPort();

}  // namespace foak

#endif  // FOAK_COMMON_NET_UTIL_H_
