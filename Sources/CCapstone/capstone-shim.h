/* Capstone's API for portalctl's `dis` (libcapstone-dev, Capstone 4). */
#include <capstone/capstone.h>
