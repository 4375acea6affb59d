#include "exec/exec_service.h"
