/*
 * Linked into a Swift analysis module (the PortalAnalysisModule product):
 * declares the portal API version the module is built for, which Swift
 * cannot export as a plain C data symbol itself.
 */
#include "../../include/portal/portal.h"

PORTAL_ANALYSIS_MODULE;
