--
-- PostgreSQL database dump
--

\restrict wWZH9KNtXBdsXRqQF6SZghXBoVKKFlc7QUqQheEgSk1A6i4zhSGrkEyyDLETgHY

-- Dumped from database version 15.18 (Debian 15.18-0+deb12u1)
-- Dumped by pg_dump version 15.18 (Debian 15.18-0+deb12u1)

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: audit; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.audit (
    seq integer NOT NULL,
    request_id character varying(63) NOT NULL,
    at timestamp with time zone NOT NULL,
    actor character varying(255) NOT NULL,
    reason text NOT NULL
);


--
-- Name: audit_seq_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.audit_seq_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: audit_seq_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.audit_seq_seq OWNED BY public.audit.seq;


--
-- Name: clusters; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.clusters (
    name character varying(255) NOT NULL,
    spec text NOT NULL,
    updated_at timestamp with time zone NOT NULL
);


--
-- Name: events; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.events (
    seq integer NOT NULL,
    request_id character varying(63) NOT NULL,
    at timestamp with time zone NOT NULL,
    message text NOT NULL
);


--
-- Name: events_seq_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.events_seq_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: events_seq_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.events_seq_seq OWNED BY public.events.seq;


--
-- Name: request_labels; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.request_labels (
    request_id character varying(63) NOT NULL,
    key character varying(255) NOT NULL,
    value text NOT NULL
);


--
-- Name: request_sets; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.request_sets (
    name character varying(255) NOT NULL,
    document text NOT NULL,
    machine_config text NOT NULL,
    join_api_url text,
    created_at timestamp with time zone NOT NULL,
    updated_at timestamp with time zone NOT NULL,
    version integer NOT NULL
);


--
-- Name: requests; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.requests (
    id character varying(63) NOT NULL,
    provider character varying(255) NOT NULL,
    stage character varying(32) NOT NULL,
    body text NOT NULL,
    fingerprint character varying(64) NOT NULL,
    machine_config text NOT NULL,
    join_api_url text,
    join_options text,
    step_index integer NOT NULL,
    step_name character varying(255),
    state text NOT NULL,
    error text,
    attempts integer NOT NULL,
    next_attempt_at timestamp with time zone,
    step_started_at timestamp with time zone,
    infra_id character varying(255),
    machine_uuid character varying(64),
    addresses text NOT NULL,
    marked_for_deletion boolean NOT NULL,
    created_at timestamp with time zone NOT NULL,
    updated_at timestamp with time zone NOT NULL,
    version integer NOT NULL,
    lease_owner character varying(255),
    lease_until timestamp with time zone
);


--
-- Name: schema_version; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.schema_version (
    version integer NOT NULL,
    name character varying(100) NOT NULL,
    applied_at timestamp with time zone NOT NULL
);


--
-- Name: audit seq; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.audit ALTER COLUMN seq SET DEFAULT nextval('public.audit_seq_seq'::regclass);


--
-- Name: events seq; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.events ALTER COLUMN seq SET DEFAULT nextval('public.events_seq_seq'::regclass);


--
-- Data for Name: audit; Type: TABLE DATA; Schema: public; Owner: -
--



--
-- Data for Name: clusters; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.clusters VALUES ('prod', '{"name":"prod","sets":[{"name":"workers","size":2}]}', '2026-12-06 03:09:44.007466+00');


--
-- Data for Name: events; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.events VALUES (1, 'legacy-0', '2026-12-06 03:09:43.979746+00', 'request created');
INSERT INTO public.events VALUES (2, 'legacy-1', '2026-12-06 03:09:43.995689+00', 'request created');
INSERT INTO public.events VALUES (3, 'legacy-2', '2026-12-06 03:09:43.999319+00', 'request created');
INSERT INTO public.events VALUES (4, 'legacy-2', '2026-12-06 03:09:44.003975+00', 'deletion requested (was pending)');


--
-- Data for Name: request_labels; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.request_labels VALUES ('legacy-0', 'role', 'worker');
INSERT INTO public.request_labels VALUES ('legacy-0', 'n', '0');
INSERT INTO public.request_labels VALUES ('legacy-1', 'role', 'worker');
INSERT INTO public.request_labels VALUES ('legacy-1', 'n', '1');
INSERT INTO public.request_labels VALUES ('legacy-2', 'role', 'worker');
INSERT INTO public.request_labels VALUES ('legacy-2', 'n', '2');


--
-- Data for Name: request_sets; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.request_sets VALUES ('pool', '{"deleting":false,"fingerprint":"ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff","join_options":{"mode":"documents"},"kind":"MachineRequestSet","machine_count":2,"template":{"arch":"amd64","extensions":[],"id":"legacy-9","kernel_args":[],"labels":{"n":"9","role":"worker"},"meta_values":[],"overlay":null,"provider":"fake","provider_data":{},"secure_boot":false,"talos_version":"v1.11.5"}}', 'fernet:gAAAAABrFNH4abYKcBMBIRJM0e-lf9zzTtmKPhNsQKNvTN5MgyMKsQFd0orQO_wadFsmMWUavB2QE2vKWNb1HGOOYPi6ND23Q9DvYNxtC68KA5LadH82vTk=', 'fernet:gAAAAABrFNH4YTK_fLrmQIsYbZ1nbVu8YolRAZIOrERlKUUZF35256ID0QwTOpv_CxrBON5qjx-wKfRMRUtvOtuD_m3Q8DizkDdItw1Dj0fulV0P6YjE_TgfdvFrsgb798y56Af7pL8H', '2026-02-01 00:00:00+00', '2026-02-01 00:00:00+00', 1);


--
-- Data for Name: requests; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.requests VALUES ('legacy-0', 'fake', 'pending', '{"arch":"amd64","extensions":[],"id":"legacy-0","kernel_args":[],"labels":{"n":"0","role":"worker"},"meta_values":[],"overlay":null,"provider":"fake","provider_data":{},"secure_boot":false,"talos_version":"v1.11.5"}', '8c44736991e820031758f8b8f4a86bf4182036382507bdee53e7639f66f45cad', 'fernet:gAAAAABrFNH3Vb3PjmhLt5RQm-26hP75pi8U0GSzU4ANThEyFsaaWR8QXvo4KS__5Nijcsee0FcBPhu6WtGfr9SmTADUQAymlAhB8s28c28HAgZQaQJ4SXw6BXNGCjGDXqJz9CRdqnzU', 'fernet:gAAAAABrFNH3ED_vavq3diD99nqK9q0kjh-_NOzAPFjGKScWbn-Qt6ecPO5e36Kwr91AoM8ijr45YR1eewUQ-9jp37Tng7-EEwWzY9umMMMZrBrHkGpl4zmSsbICcrwa8AhTm8lkxA6C', '{"events_sink":"[fdae:41e4:649b:9303::1]:8090","kmsg_log":"tcp://[fdae:41e4:649b:9303::1]:8092","mode":"documents"}', 0, NULL, '{}', NULL, 0, NULL, NULL, NULL, NULL, '[]', false, '2026-12-06 03:09:43.979746+00', '2026-12-06 03:09:43.979746+00', 1, NULL, NULL);
INSERT INTO public.requests VALUES ('legacy-1', 'fake', 'pending', '{"arch":"amd64","extensions":[],"id":"legacy-1","kernel_args":[],"labels":{"n":"1","role":"worker"},"meta_values":[],"overlay":null,"provider":"fake","provider_data":{},"secure_boot":false,"talos_version":"v1.11.5"}', 'f06edfb690ee870f3b7c018d7187b1c1e7162c02aa063f508bc733f7e8b8e8f4', 'fernet:gAAAAABrFNH3KwFVuHvgbx44Wb3UV2s_H9YPuMXgyJhahlRgIp-a07wMy2-m2bJgIHKjB9HzqygH34eRohpbRSFJGbrl9DRktRAKDQsOUqWtjn-uzZvPl6rDKIP5aMS-kn8uxM8Sr-PH', 'fernet:gAAAAABrFNH3smbSDpX_XdBKqrBpcmnfrjAVSdqqQ7C5WpAWRO688cl03s--PGQ1uucbEoXSuatCfGu-7HEwVp13JltE_RXWdQmJ1oPXjbua9tTyI2jM2u8G5--2REQj7gFCsaXVxZAJ', '{"events_sink":"[fdae:41e4:649b:9303::1]:8090","kmsg_log":"tcp://[fdae:41e4:649b:9303::1]:8092","mode":"documents"}', 0, NULL, '{}', NULL, 0, NULL, NULL, NULL, NULL, '[]', false, '2026-12-06 03:09:43.995689+00', '2026-12-06 03:09:43.995689+00', 1, NULL, NULL);
INSERT INTO public.requests VALUES ('legacy-2', 'fake', 'deprovisioning', '{"arch":"amd64","extensions":[],"id":"legacy-2","kernel_args":[],"labels":{"n":"2","role":"worker"},"meta_values":[],"overlay":null,"provider":"fake","provider_data":{},"secure_boot":false,"talos_version":"v1.11.5"}', '2854517a1480c82df2d325817445f832be72cd777a9f14c044c46b93ecf7a135', 'fernet:gAAAAABrFNH4SievmsuSTW53AoySHGeUPUFfJSeL2BKTZZiYzjvcI7cIr6Kn0A3oCzccSD1b4oucR8yKREB12DPaVRrpebuHOLI2pObXas1LCrxA_M5tcJ9pgEYJ-cpLg5vHfAT_v0XH', 'fernet:gAAAAABrFNH49e9iE1fekeSh2-th6XEaK3F9ptUFLQzYsL_KgJzMDsazNWEAIw3xJt6u_6BwetPGJL5lttfy01GeHkb0q7sk_ZZc1TyzNSK3QxZYOss_QMU0iapBJqQb4ER8wEhZl14W', '{"events_sink":"[fdae:41e4:649b:9303::1]:8090","kmsg_log":"tcp://[fdae:41e4:649b:9303::1]:8092","mode":"documents"}', 0, NULL, '{}', NULL, 0, NULL, NULL, NULL, NULL, '[]', false, '2026-12-06 03:09:43.999319+00', '2026-12-06 03:09:44.003975+00', 2, NULL, NULL);


--
-- Data for Name: schema_version; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.schema_version VALUES (1, 'initial schema', '2026-12-06 03:09:43.942153+00');
INSERT INTO public.schema_version VALUES (2, 'request sets table', '2026-12-06 03:09:43.942153+00');


--
-- Name: audit_seq_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.audit_seq_seq', 1, false);


--
-- Name: events_seq_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.events_seq_seq', 4, true);


--
-- Name: audit audit_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.audit
    ADD CONSTRAINT audit_pkey PRIMARY KEY (seq);


--
-- Name: clusters clusters_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.clusters
    ADD CONSTRAINT clusters_pkey PRIMARY KEY (name);


--
-- Name: events events_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.events
    ADD CONSTRAINT events_pkey PRIMARY KEY (seq);


--
-- Name: request_labels request_labels_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.request_labels
    ADD CONSTRAINT request_labels_pkey PRIMARY KEY (request_id, key);


--
-- Name: request_sets request_sets_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.request_sets
    ADD CONSTRAINT request_sets_pkey PRIMARY KEY (name);


--
-- Name: requests requests_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.requests
    ADD CONSTRAINT requests_pkey PRIMARY KEY (id);


--
-- Name: schema_version schema_version_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.schema_version
    ADD CONSTRAINT schema_version_pkey PRIMARY KEY (version);


--
-- Name: ix_events_request_id; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_events_request_id ON public.events USING btree (request_id);


--
-- Name: ix_request_labels_key_value; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_request_labels_key_value ON public.request_labels USING btree (key, value);


--
-- Name: ix_requests_provider; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_requests_provider ON public.requests USING btree (provider);


--
-- Name: ix_requests_stage; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_requests_stage ON public.requests USING btree (stage);


--
-- Name: events events_request_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.events
    ADD CONSTRAINT events_request_id_fkey FOREIGN KEY (request_id) REFERENCES public.requests(id) ON DELETE CASCADE;


--
-- Name: request_labels request_labels_request_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.request_labels
    ADD CONSTRAINT request_labels_request_id_fkey FOREIGN KEY (request_id) REFERENCES public.requests(id) ON DELETE CASCADE;


--
-- PostgreSQL database dump complete
--

\unrestrict wWZH9KNtXBdsXRqQF6SZghXBoVKKFlc7QUqQheEgSk1A6i4zhSGrkEyyDLETgHY

