/*
 * Exact timestamp parsing for CloudTrail: eventTime and creationDate are
 * ISO-8601 UTC ("2023-07-10T12:25:32Z", sometimes with fractional seconds);
 * STS credential expirations are written "Jul 10, 2023, 2:25:32 PM". All
 * detection time comes from these, never from the wall clock, so they are
 * parsed by hand (no locale, no timezone database, no mktime()).
 */
#include "trailhound/time.h"

#include <stdio.h>
#include <string.h>

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
 * days_from_civil). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	const int64_t era = (y >= 0 ? y : y - 399) / 400;
	const unsigned yoe = (unsigned)(y - era * 400);
	const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static int days_in_month(int y, int m)
{
	static const int dm[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
		return 29;
	return dm[m - 1];
}

static int digits(const char *s, size_t n, int *out)
{
	int v = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return 0;
}

static int to_ms(int y, int mo, int d, int h, int mi, int s, int ms, int64_t *out)
{
	/* Both parsers end here, so the ranges are checked once for both: a
	 * day the month does not have is an error, not a date in the next one. */
	if (y < 1970 || y > 9999 || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) ||
	    h < 0 || h > 23 || mi < 0 || mi > 59 || s < 0 || s > 60)
		return TH_EPARSE;
	int64_t days = days_from_civil(y, (unsigned)mo, (unsigned)d);
	*out = ((days * 24 + h) * 60 + mi) * 60000LL + (int64_t)s * 1000 + ms;
	return 0;
}

int th_time_parse_iso(const char *s, size_t len, int64_t *ms)
{
	int y, mo, d, h, mi, sec, frac = 0;
	size_t i;

	/* YYYY-MM-DDTHH:MM:SS */
	if (len < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') ||
	    s[13] != ':' || s[16] != ':')
		return TH_EPARSE;
	if (digits(s, 4, &y) || digits(s + 5, 2, &mo) || digits(s + 8, 2, &d) ||
	    digits(s + 11, 2, &h) || digits(s + 14, 2, &mi) || digits(s + 17, 2, &sec))
		return TH_EPARSE;
	i = 19;
	if (s[i] == '.') {
		/* Keep milliseconds exactly; further digits are truncated. */
		int nd = 0;
		i++;
		while (i < len && s[i] >= '0' && s[i] <= '9') {
			if (nd < 3)
				frac = frac * 10 + (s[i] - '0');
			nd++;
			i++;
		}
		if (nd == 0)
			return TH_EPARSE;
		for (; nd < 3; nd++)
			frac *= 10;
	}
	if (i + 1 == len && (s[i] == 'Z' || s[i] == 'z'))
		;
	else if (i + 6 == len && (s[i] == '+' || s[i] == '-') && memcmp(s + i + 1, "00:00", 5) == 0)
		;
	else
		return TH_EPARSE;
	return to_ms(y, mo, d, h, mi, sec, frac, ms);
}

/* Reads 1..maxd digits at *p. */
static int num(const char **p, const char *end, int maxd, int *out)
{
	int v = 0, n = 0;
	while (*p < end && n < maxd && **p >= '0' && **p <= '9') {
		v = v * 10 + (**p - '0');
		(*p)++;
		n++;
	}
	*out = v;
	return n ? 0 : -1;
}

static int lit(const char **p, const char *end, char c)
{
	if (*p < end && **p == c) {
		(*p)++;
		return 0;
	}
	return -1;
}

int th_time_parse_expiration(const char *s, size_t len, int64_t *ms)
{
	static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
	const char *p = s, *end = s + len;
	int mon = -1, d, y, h, mi, sec;

	if (len >= 20 && s[4] == '-')
		return th_time_parse_iso(s, len, ms);
	/* "Jul 10, 2023, 2:25:32 PM", or without the comma after the year
	 * ("Aug 26, 2019 11:15:26 PM"); no locale, no sscanf. */
	if (len < 3)
		return TH_EPARSE;
	for (int i = 0; i < 12; i++)
		if (memcmp(s, months + 3 * i, 3) == 0)
			mon = i + 1;
	p += 3;
	if (mon < 0 || lit(&p, end, ' ') || num(&p, end, 2, &d) || lit(&p, end, ',') ||
	    lit(&p, end, ' ') || num(&p, end, 4, &y))
		return TH_EPARSE;
	lit(&p, end, ',');
	if (lit(&p, end, ' ') || num(&p, end, 2, &h) || lit(&p, end, ':') || num(&p, end, 2, &mi) ||
	    lit(&p, end, ':') || num(&p, end, 2, &sec) || lit(&p, end, ' ') || end - p != 2)
		return TH_EPARSE;
	if (h < 1 || h > 12)
		return TH_EPARSE;
	if (p[0] == 'A' && p[1] == 'M')
		h = h == 12 ? 0 : h;
	else if (p[0] == 'P' && p[1] == 'M')
		h = h == 12 ? 12 : h + 12;
	else
		return TH_EPARSE;
	return to_ms(y, mon, d, h, mi, sec, 0, ms);
}

void th_time_format(int64_t ms, char *buf, size_t size)
{
	int64_t days = ms >= 0 ? ms / 86400000 : -((-ms + 86399999) / 86400000);
	int64_t rem = ms - days * 86400000;
	/* civil_from_days */
	int64_t z = days + 719468;
	const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	const unsigned doe = (unsigned)(z - era * 146097);
	const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	const unsigned mp = (5 * doy + 2) / 153;
	const unsigned d = doy - (153 * mp + 2) / 5 + 1;
	const unsigned m = mp < 10 ? mp + 3 : mp - 9;
	const int64_t y = (int64_t)yoe + era * 400 + (m <= 2);
	int h = (int)(rem / 3600000), mi = (int)(rem / 60000 % 60), s = (int)(rem / 1000 % 60),
	    msec = (int)(rem % 1000);
	if (msec)
		snprintf(buf, size, "%04lld-%02u-%02uT%02d:%02d:%02d.%03dZ", (long long)y, m, d, h, mi,
			 s, msec);
	else
		snprintf(buf, size, "%04lld-%02u-%02uT%02d:%02d:%02dZ", (long long)y, m, d, h, mi, s);
}
