#include "policy/policy_service.h"
