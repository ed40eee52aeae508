/* tests/unit/templates_store.c -- the store's conformance suite for templates: what the
 * "templates" section of store.h promises, checked through store.h alone against the
 * backend named by ENGAGE_TEST_STORE (store_loc.h): insert with version 1, versions kept
 * and listed newest first, live names unique (a deleted one frees its name), deleted
 * templates gone from get and list but their versions still readable, list paging. */
#include <stdlib.h>

#include "store_fixture.h"

/* A copy of the last template a callback saw, and how many it saw. */
struct seen {
    int n;
    int64_t id[8];
    int version[8];
    char name[64], subject[64], html[64], text[64], from_email[64], from_name[64], reply_to[64],
        created_by[64];
    int text_null, from_name_null, reply_to_null, deleted;
    int64_t created_at, updated_at;
};

static void copy_or(char *dst, size_t cap, const char *s, int *was_null)
{
    if (was_null)
        *was_null = s == NULL;
    snprintf(dst, cap, "%s", s ? s : "");
}

static int see(void *ctx, const struct store_template *t)
{
    struct seen *s = ctx;

    cr_assert_lt(s->n, 8);
    s->id[s->n] = t->id;
    s->version[s->n++] = t->version;
    copy_or(s->name, sizeof s->name, t->name, NULL);
    copy_or(s->subject, sizeof s->subject, t->subject, NULL);
    copy_or(s->html, sizeof s->html, t->html, NULL);
    copy_or(s->text, sizeof s->text, t->text, &s->text_null);
    copy_or(s->from_email, sizeof s->from_email, t->from_email, NULL);
    copy_or(s->from_name, sizeof s->from_name, t->from_name, &s->from_name_null);
    copy_or(s->reply_to, sizeof s->reply_to, t->reply_to, &s->reply_to_null);
    copy_or(s->created_by, sizeof s->created_by, t->created_by, NULL);
    s->deleted = t->deleted;
    s->created_at = t->created_at;
    s->updated_at = t->updated_at;
    return 0;
}

static struct store_template tpl(const char *name, const char *subject)
{
    struct store_template t = {
        .name = name,
        .subject = subject,
        .html = "<p>Hi {{ first_name }}</p>",
        .from_email = "news@example.com",
        .from_name = "News",
        .created_by = "key:1",
        .version = 1,
        .created_at = 1000,
        .updated_at = 1000,
    };
    return t;
}

static int64_t insert(struct store *st, struct store_template *t)
{
    struct err e = {0};
    begin(st);
    cr_assert_eq(store_template_insert(st, t, &e), 0, "%s", e.msg);
    commit(st);
    cr_assert_gt(t->id, 0);
    return t->id;
}

UTEST(templates_store, insert_get_and_versions)
{
    char *d = test_store_location();
    struct store *st = open_at(d);
    struct store_template t = tpl("welcome", "Hello");
    struct seen s = {0};
    struct err e = {0};
    int64_t id = insert(st, &t);

    cr_assert_eq(store_template_get(st, id, see, &s, &e), 0, "%s", e.msg);
    cr_assert_eq(s.n, 1);
    cr_assert_str_eq(s.name, "welcome");
    cr_assert_str_eq(s.subject, "Hello");
    cr_assert_str_eq(s.html, "<p>Hi {{ first_name }}</p>");
    cr_assert(s.text_null, "no text: NULL, derived at render");
    cr_assert_str_eq(s.from_name, "News");
    cr_assert(s.reply_to_null);
    cr_assert_eq(s.version[0], 1);
    cr_assert_eq(s.created_at, 1000);

    /* Version 2 with a text body, written at 2000 by someone else. */
    t.version = 2;
    t.subject = "Hello again";
    t.text = "Hi {{ first_name }}";
    t.reply_to = "reply@example.com";
    t.updated_at = 2000;
    t.created_by = "key:2";
    begin(st);
    cr_assert_eq(store_template_update(st, &t, 1, &e), 0, "%s", e.msg);
    commit(st);
    memset(&s, 0, sizeof s);
    cr_assert_eq(store_template_get(st, id, see, &s, &e), 0, "%s", e.msg);
    cr_assert_eq(s.version[0], 2);
    cr_assert_str_eq(s.subject, "Hello again");
    cr_assert_str_eq(s.text, "Hi {{ first_name }}");
    cr_assert_str_eq(s.reply_to, "reply@example.com");
    cr_assert_str_eq(s.created_by, "key:1", "the template's author, not the version's");
    cr_assert_eq(s.created_at, 1000);
    cr_assert_eq(s.updated_at, 2000);

    /* Version 1 as it was. */
    memset(&s, 0, sizeof s);
    cr_assert_eq(store_template_version_get(st, id, 1, see, &s, &e), 0, "%s", e.msg);
    cr_assert_str_eq(s.subject, "Hello");
    cr_assert(s.text_null);
    cr_assert_eq(store_template_version_get(st, id, 3, see, &s, &e), E_NOTFOUND);
    err_clear(&e);

    /* Every version, newest first, each with its own author and time. */
    memset(&s, 0, sizeof s);
    cr_assert_eq(store_template_versions(st, id, see, &s, &e), 0, "%s", e.msg);
    cr_assert_eq(s.n, 2);
    cr_assert_eq(s.version[0], 2);
    cr_assert_eq(s.version[1], 1);
    cr_assert_str_eq(s.created_by, "key:1");
    cr_assert_eq(s.created_at, 1000);

    /* A rename alone: no version added. */
    t.name = "welcome-2";
    t.updated_at = 3000;
    begin(st);
    cr_assert_eq(store_template_update(st, &t, 0, &e), 0, "%s", e.msg);
    commit(st);
    memset(&s, 0, sizeof s);
    cr_assert_eq(store_template_versions(st, id, see, &s, &e), 0, "%s", e.msg);
    cr_assert_eq(s.n, 2);
    cr_assert_str_eq(s.name, "welcome-2");
    store_close(st);
    free(d);
}

UTEST(templates_store, names_unique_among_live_ones)
{
    char *d = test_store_location();
    struct store *st = open_at(d);
    struct store_template a = tpl("promo", "A"), b = tpl("promo", "B"), c = tpl("other", "C");
    struct seen s = {0};
    struct err e = {0};
    int64_t id = insert(st, &a);

    begin(st);
    cr_assert_eq(store_template_insert(st, &b, &e), E_CONFLICT);
    cr_assert(strstr(e.msg, "promo"), "%s", e.msg);
    store_rollback(st);
    err_clear(&e);

    /* A rename onto a live name is a clash too. */
    insert(st, &c);
    c.name = "promo";
    begin(st);
    cr_assert_eq(store_template_update(st, &c, 0, &e), E_CONFLICT);
    store_rollback(st);
    err_clear(&e);

    /* Deleted: gone from get and list, its versions still readable, its name free. */
    a.deleted = 1;
    a.updated_at = 5000;
    begin(st);
    cr_assert_eq(store_template_update(st, &a, 0, &e), 0, "%s", e.msg);
    commit(st);
    cr_assert_eq(store_template_get(st, id, see, &s, &e), E_NOTFOUND);
    err_clear(&e);
    cr_assert_eq(store_template_version_get(st, id, 1, see, &s, &e), 0, "%s", e.msg);
    cr_assert_eq(s.deleted, 1);
    cr_assert_str_eq(s.subject, "A");
    memset(&s, 0, sizeof s);
    cr_assert_eq(store_templates_list(st, 0, 10, see, &s, &e), 0, "%s", e.msg);
    cr_assert_eq(s.n, 1, "only the live one");
    cr_assert_str_eq(s.name, "other");
    b.id = 0;
    insert(st, &b);
    cr_assert_neq(b.id, id);
    store_close(st);
    free(d);
}

UTEST(templates_store, list_pages_by_id)
{
    char *d = test_store_location();
    struct store *st = open_at(d);
    struct seen s = {0};
    struct err e = {0};
    int64_t ids[5];
    int i;

    for (i = 0; i < 5; i++) {
        char name[16];
        struct store_template t;
        snprintf(name, sizeof name, "t%d", i);
        t = tpl(name, "S");
        ids[i] = insert(st, &t);
    }
    cr_assert_eq(store_templates_list(st, 0, 2, see, &s, &e), 0, "%s", e.msg);
    cr_assert_eq(s.n, 2);
    cr_assert_eq(s.id[0], ids[0]);
    cr_assert_eq(s.id[1], ids[1]);
    memset(&s, 0, sizeof s);
    cr_assert_eq(store_templates_list(st, ids[1], 2, see, &s, &e), 0, "%s", e.msg);
    cr_assert_eq(s.n, 2);
    cr_assert_eq(s.id[0], ids[2]);
    memset(&s, 0, sizeof s);
    cr_assert_eq(store_templates_list(st, ids[3], 2, see, &s, &e), 0, "%s", e.msg);
    cr_assert_eq(s.n, 1);
    cr_assert_eq(s.id[0], ids[4]);
    memset(&s, 0, sizeof s);
    cr_assert_eq(store_templates_list(st, 0, 0, see, &s, &e), 0, "%s", e.msg);
    cr_assert_eq(s.n, 5, "limit 0: all");
    cr_assert_eq(store_template_get(st, 999, see, &s, &e), E_NOTFOUND);
    err_clear(&e);
    cr_assert_eq(store_template_versions(st, 999, see, &s, &e), E_NOTFOUND);
    store_close(st);
    free(d);
}
