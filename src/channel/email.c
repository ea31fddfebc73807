/*
 * email.c
 *		E-mail through an SMTP relay (url smtp://host[:port] with STARTTLS, or
 *		smtps://host[:port]): one submission per alert, from options.from to
 *		options.to (one address or an array), credentials in the secret as
 *		{"user": "...", "password": "..."} (no AUTH without one).
 *
 * The message is multipart/alternative: a text/plain part, then the HTML
 * (in a multipart/related with the chart as an inline image/png whose
 * Content-ID the HTML's <img src="cid:..."> names, when the channel carries
 * the chart).  Every part is base64 in 76-character lines, so no line is too
 * long for SMTP and no body line can start with a dot or look like a
 * boundary: boundaries start with "=_", which base64 never contains.
 *
 * The Message-ID, boundaries and Content-ID derive from the delivery's
 * idempotency key, so a retried delivery is the same message to every
 * receiver that deduplicates on Message-ID.  TLS is required unless
 * options.tls is "none" (a relay on this machine); the write-time check
 * refuses credentials over plain SMTP to any other host.  Names are
 * HTML-escaped in the HTML (no tag, attribute or link), and in both parts an
 * invisible word joiner keeps names from being linked (channel.c).  The
 * Subject is RFC 2047 encoded when it is not plain printable ASCII, which
 * also keeps a name from starting a header of its own.
 */
#include "postgres.h"

#include <time.h>

#include "channel_kind.h"

/* Longest address (RFC 5321 4.5.3.1.3 path, less the brackets). */
#define MAX_ADDRESS		254
/* Recipients of one channel; the write-time check says the same. */
#define MAX_RECIPIENTS	50
/*
 * Bytes of text per encoded word: 52 base64 characters, 64 with framing, so
 * that even the first line, after "Subject: ", stays within the 76 that RFC
 * 2047 allows a line with encoded words.
 */
#define ENCODED_WORD_BYTES 39
/* Longest Subject sent as it is (RFC 5322 lines are at most 998). */
#define MAX_RAW_SUBJECT 900

/* A character of an address's local part (RFC 5322 atext, and dots). */
static bool
local_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		(c != '\0' && strchr(".!#$%&'*+/=?^_`{|}~-", c) != NULL);
}

/*
 * Is s a bare address local@domain with an atext local part and a domain of
 * letter-digit-hyphen labels?  The same rule as alert_channels' check; no
 * display names, quotes or comments, so nothing can reach another header.
 */
static bool
address_ok(const char *s)
{
	const char *at = strchr(s, '@');
	const char *p;
	bool		label_start = true;

	if (at == NULL || at == s || at - s > 64 || strlen(s) > MAX_ADDRESS || at[1] == '\0')
		return false;
	for (p = s; p < at; p++)
	{
		if (!local_char(*p))
			return false;
	}
	for (p = at + 1; *p; p++)
	{
		bool		alnum = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			(*p >= '0' && *p <= '9');

		if (*p == '.' && !label_start && p[-1] != '-')
			label_start = true;
		else if (alnum || (*p == '-' && !label_start))
			label_start = false;
		else
			return false;
	}
	return !label_start && p[-1] != '-';
}

/* A checked address of the channel's options, or an error naming the option. */
static const char *
checked_address(const MaChannel *ch, const char *addr, const char *option)
{
	if (addr == NULL || !address_ok(addr))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("alert channel \"%s\" has no valid address in options.%s", ch->name, option),
				 errhint("Use bare addresses such as alerts@example.com.")));
	return addr;
}

/* The domain of the sender, which Message-ID and Content-ID end with. */
static const char *
sender_domain(const char *from)
{
	return strchr(from, '@') + 1;
}

/*
 * The idempotency key as the left part of a message id: its letters,
 * digits, dots and hyphens (the keys have no other characters), anything
 * else as '_'.
 */
static char *
id_left(const MaAlertMessage *msg)
{
	char	   *s = pstrdup(msg->idempotency_key);

	for (char *p = s; *p; p++)
	{
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			  (*p >= '0' && *p <= '9') || *p == '.' || *p == '-'))
			*p = '_';
	}
	return s;
}

/* RFC 5322 date of now_ms, in UTC, with English names whatever the locale. */
static char *
mail_date(int64 now_ms)
{
	static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
	static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
	"Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	time_t		t = (time_t) (now_ms / 1000);
	struct tm	tm;

	if (gmtime_r(&t, &tm) == NULL)
		elog(ERROR, "could not convert the time of an e-mail");
	return psprintf("%s, %02d %s %04d %02d:%02d:%02d +0000",
					days[tm.tm_wday], tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900,
					tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/*
 * The Subject header's value: "[FIRING] <metric>" with control characters
 * as spaces; as RFC 2047 encoded words (folded, split between characters)
 * unless it is printable ASCII without "=?" and short.
 */
static char *
subject(const MaAlertMessage *msg)
{
	char	   *s = ma_channel_title(msg, MA_TEXT_JSON);
	bool		raw = strlen(s) <= MAX_RAW_SUBJECT && strstr(s, "=?") == NULL;
	StringInfoData buf;
	const char *p;

	for (char *q = s; *q; q++)
	{
		if ((unsigned char) *q < 0x20 || *q == 0x7f)
			*q = ' ';
		if ((unsigned char) *q >= 0x80)
			raw = false;
	}
	if (raw)
		return s;
	initStringInfo(&buf);
	for (p = s; *p;)
	{
		size_t		n = Min(strlen(p), ENCODED_WORD_BYTES);

		/* never split a UTF-8 character: back up to a lead byte */
		while (n > 1 && n < strlen(p) && (p[n] & 0xC0) == 0x80)
			n--;
		if (buf.len > 0)
			appendStringInfoString(&buf, "\r\n ");
		appendStringInfo(&buf, "=?UTF-8?B?%s?=", ma_base64(p, n));
		p += n;
	}
	return buf.data;
}

/* s with every line break as CRLF, the canonical form of text parts. */
static char *
crlf(const char *s)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (const char *p = s; *p; p++)
	{
		if (*p == '\n')
			appendStringInfoString(&buf, "\r\n");
		else
			appendStringInfoChar(&buf, *p);
	}
	appendStringInfoString(&buf, "\r\n");
	return buf.data;
}

/* The HTML part; img_cid names the inline chart, or is NULL without one. */
static char *
html_body(const MaAlertMessage *msg, const char *img_cid)
{
	char	   *title = ma_channel_title(msg, MA_TEXT_HTML);
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf,
					 "<!DOCTYPE html>\r\n"
					 "<html><head><meta charset=\"utf-8\"><title>%s</title></head>\r\n"
					 "<body>\r\n<h2>%s</h2>\r\n<p>%s</p>\r\n<table>\r\n",
					 title, title, ma_channel_escape(msg->summary, MA_TEXT_HTML));
	appendStringInfo(&buf, "<tr><th align=\"left\">minute</th><td>%s UTC</td></tr>\r\n", msg->minute);
	appendStringInfoString(&buf, "<tr><th align=\"left\">value</th><td>");
	ma_append_json_double(&buf, msg->value);
	appendStringInfoString(&buf, "</td></tr>\r\n");
	appendStringInfo(&buf, "<tr><th align=\"left\">source</th><td>%s</td></tr>\r\n",
					 ma_channel_escape(msg->source, MA_TEXT_HTML));
	appendStringInfo(&buf, "<tr><th align=\"left\">episode start</th><td>%s UTC</td></tr>\r\n",
					 msg->episode_start);
	appendStringInfoString(&buf, "</table>\r\n");
	if (img_cid)
		appendStringInfo(&buf, "<p><img src=\"cid:%s\" alt=\"Chart of %s\"></p>\r\n",
						 img_cid, ma_channel_escape(msg->metric, MA_TEXT_HTML));
	appendStringInfoString(&buf, "</body></html>\r\n");
	return buf.data;
}

/* Appends one base64 leaf part: its headers, a blank line, its body. */
static void
append_part(StringInfo buf, const char *boundary, const char *headers,
			const char *data, size_t len)
{
	appendStringInfo(buf, "--%s\r\n%sContent-Transfer-Encoding: base64\r\n\r\n",
					 boundary, headers);
	ma_append_base64_lines(buf, data, len);
}

/* The whole message: headers and the MIME tree of the file header. */
static char *
build_message(const MaAlertMessage *msg, const char *from,
			  List *to, int64 now_ms, size_t *len)
{
	const char *domain = sender_domain(from);
	char	   *left = id_left(msg);
	char	   *tag = pnstrdup(ma_md5_hex(msg->idempotency_key, strlen(msg->idempotency_key)), 16);
	char	   *alt = psprintf("=_ma-alt-%s", tag);
	char	   *rel = psprintf("=_ma-rel-%s", tag);
	char	   *cid = msg->png ? psprintf("chart-%s@%s", left, domain) : NULL;
	char	   *text = crlf(ma_channel_text(msg, MA_TEXT_PLAIN, "", "", ""));
	char	   *html = html_body(msg, cid);
	StringInfoData buf;
	ListCell   *lc;

	initStringInfo(&buf);
	appendStringInfo(&buf, "From: %s\r\nTo: ", from);
	foreach(lc, to)
		appendStringInfo(&buf, "%s%s", lc == list_head(to) ? "" : ",\r\n ", (char *) lfirst(lc));
	appendStringInfo(&buf, "\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: <%s@%s>\r\n",
					 subject(msg), mail_date(now_ms), left, domain);
	appendStringInfoString(&buf, "MIME-Version: 1.0\r\nAuto-Submitted: auto-generated\r\n");
	appendStringInfo(&buf, "Content-Type: multipart/alternative; boundary=\"%s\"\r\n\r\n", alt);
	appendStringInfoString(&buf, "This is a multipart message in MIME format.\r\n");
	append_part(&buf, alt, "Content-Type: text/plain; charset=utf-8\r\n", text, strlen(text));
	if (cid)
	{
		appendStringInfo(&buf, "--%s\r\nContent-Type: multipart/related; type=\"text/html\"; boundary=\"%s\"\r\n\r\n",
						 alt, rel);
		append_part(&buf, rel, "Content-Type: text/html; charset=utf-8\r\n", html, strlen(html));
		append_part(&buf, rel,
					psprintf("Content-Type: image/png\r\nContent-ID: <%s>\r\n"
							 "Content-Disposition: inline; filename=\"chart.png\"\r\n", cid),
					msg->png, msg->png_len);
		appendStringInfo(&buf, "--%s--\r\n", rel);
	}
	else
		append_part(&buf, alt, "Content-Type: text/html; charset=utf-8\r\n", html, strlen(html));
	appendStringInfo(&buf, "--%s--\r\n", alt);
	*len = buf.len;
	return buf.data;
}

/* The recipients of options.to, checked; an error without any. */
static List *
recipients(const MaChannel *ch)
{
	List	   *to = ma_json_string_list(ch->options, "to");
	ListCell   *lc;

	if (to == NIL || list_length(to) > MAX_RECIPIENTS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("alert channel \"%s\" needs 1 to %d addresses in options.to",
						ch->name, MAX_RECIPIENTS)));
	foreach(lc, to)
		checked_address(ch, lfirst(lc), "to");
	return to;
}

static MaHttpRequest *
email_next(const MaChannel *ch, const MaAlertMessage *msg, int step,
		   const char *state, int64 now_ms)
{
	const char *from;
	List	   *to;
	char	   *tls;
	MaHttpRequest *req;
	ListCell   *lc;

	if (step > 0)
		return NULL;
	from = checked_address(ch, ma_json_string_field(ch->options, "from"), "from");
	to = recipients(ch);
	req = ma_smtp_request_new(ch->url, from);
	foreach(lc, to)
		req->mail_rcpt = lappend(req->mail_rcpt, psprintf("<%s>", (char *) lfirst(lc)));
	tls = ma_json_string_field(ch->options, "tls");
	req->tls_required = !(tls && strcmp(tls, "none") == 0);
	req->username = ma_secret_field(ch, "user");
	req->password = ma_secret_field(ch, "password");
	req->body = build_message(msg, from, to, now_ms, &req->body_len);
	return req;
}

const MaChannelKind ma_kind_email = {
	.name = "email",
	.transport = MA_TRANSPORT_SMTP,
	.carries_images = true,
	.rate_per_minute = 0,
	.next_request = email_next,
	.accepted = ma_channel_accept_any,
};
