/*
 * PortalAnalysisModule.h - nothing to call: depending on the
 * PortalAnalysisModule product links in the exported
 * portal_analysis_api_version (declaration.c) that libportal.so checks
 * before it calls a Swift module's portal_analysis_init.
 */
#ifndef PORTAL_ANALYSIS_MODULE_H
#define PORTAL_ANALYSIS_MODULE_H
#endif
