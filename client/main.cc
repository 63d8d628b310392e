// foakctl: the command-line client of foakd. Everything but the terminal
// check lives in foak_client (FoakctlMain) so tests can run it in-process.
#include <unistd.h>

#include <iostream>

#include "client/foakctl_main.h"

int main(int argc, char** argv) {
  foak::client::FoakctlOptions options;
  options.out_is_tty = ::isatty(STDOUT_FILENO) == 1;
  return foak::client::FoakctlMain(argc, argv, std::cout, std::cerr, options);
}
