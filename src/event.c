/*
 * Derived views of a parsed event that several modules need.
 */
#include "trailhound/event.h"

#include <string.h>

const char *th_event_account(const struct th_event *ev)
{
	if (ev->ui.account_id && *ev->ui.account_id)
		return ev->ui.account_id;
	return ev->recipient_account_id;
}

const char *th_event_session_name(const struct th_event *ev)
{
	const char *arn = ev->ui.arn, *slash;
	if (!arn || !strstr(arn, ":assumed-role/"))
		return NULL;
	slash = strrchr(arn, '/');
	return slash && slash[1] ? slash + 1 : NULL;
}
