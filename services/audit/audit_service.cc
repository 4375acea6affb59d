#include "audit/audit_service.h"
