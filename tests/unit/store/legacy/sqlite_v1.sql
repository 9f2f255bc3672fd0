BEGIN TRANSACTION;
CREATE TABLE audit (
	seq INTEGER NOT NULL, 
	request_id VARCHAR(63) NOT NULL, 
	at DATETIME NOT NULL, 
	actor VARCHAR(255) NOT NULL, 
	reason TEXT NOT NULL, 
	PRIMARY KEY (seq)
);
CREATE TABLE clusters (
	name VARCHAR(255) NOT NULL, 
	spec TEXT NOT NULL, 
	updated_at DATETIME NOT NULL, 
	PRIMARY KEY (name)
);
INSERT INTO "clusters" VALUES('prod','{"name":"prod","sets":[{"name":"workers","size":2}]}','2026-12-06 03:09:42.910828');
INSERT INTO "clusters" VALUES('machine-request-set/pool','{"kind": "MachineRequestSet", "template": {"id": "legacy-9", "provider": "fake", "talos_version": "v1.11.5", "arch": "amd64", "secure_boot": false, "extensions": [], "kernel_args": [], "meta_values": [], "overlay": null, "labels": {"role": "worker", "n": "9"}, "provider_data": {}}, "join_options": {"mode": "documents"}, "machine_count": 2, "deleting": false, "fingerprint": "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff", "machine_config": "fernet:gAAAAABrFNH2fqa_0GIkaAGJeQL0wIOFOBVxMP7CwX4OgSfUSfL-CEda2-rAUnxLEcsGUZh0eR9QXNe7qA_E67raLx2d9MXP8WSvI3iBVJ2OUjUPKR-9czE=", "join_api_url": "fernet:gAAAAABrFNH2CV9IT8JGlH3kQoy1QWken1Zz-YgdvmCH5p1eZCWQuu3j81zJaGa9g_mZ2WaL2xkb9lJolglAEkq-l2vE8vxh6m6-oVlX8v39-Du5ZyBDis1dhwzNj7f8ZAEBONyc3unh", "created_at": "2026-02-01T00:00:00+00:00", "updated_at": "2026-02-01T00:00:00+00:00"}','2026-02-01 00:00:00.000000');
CREATE TABLE events (
	seq INTEGER NOT NULL, 
	request_id VARCHAR(63) NOT NULL, 
	at DATETIME NOT NULL, 
	message TEXT NOT NULL, 
	PRIMARY KEY (seq), 
	FOREIGN KEY(request_id) REFERENCES requests (id) ON DELETE CASCADE
);
INSERT INTO "events" VALUES(1,'legacy-0','2026-12-06 03:09:42.900659','request created');
INSERT INTO "events" VALUES(2,'legacy-1','2026-12-06 03:09:42.906340','request created');
INSERT INTO "events" VALUES(3,'legacy-2','2026-12-06 03:09:42.907802','request created');
INSERT INTO "events" VALUES(4,'legacy-2','2026-12-06 03:09:42.909493','deletion requested (was pending)');
CREATE TABLE request_labels (
	request_id VARCHAR(63) NOT NULL, 
	"key" VARCHAR(255) NOT NULL, 
	value TEXT NOT NULL, 
	PRIMARY KEY (request_id, "key"), 
	FOREIGN KEY(request_id) REFERENCES requests (id) ON DELETE CASCADE
);
INSERT INTO "request_labels" VALUES('legacy-0','role','worker');
INSERT INTO "request_labels" VALUES('legacy-0','n','0');
INSERT INTO "request_labels" VALUES('legacy-1','role','worker');
INSERT INTO "request_labels" VALUES('legacy-1','n','1');
INSERT INTO "request_labels" VALUES('legacy-2','role','worker');
INSERT INTO "request_labels" VALUES('legacy-2','n','2');
CREATE TABLE requests (
	id VARCHAR(63) NOT NULL, 
	provider VARCHAR(255) NOT NULL, 
	stage VARCHAR(32) NOT NULL, 
	body TEXT NOT NULL, 
	fingerprint VARCHAR(64) NOT NULL, 
	machine_config TEXT NOT NULL, 
	join_api_url TEXT, 
	join_options TEXT, 
	step_index INTEGER NOT NULL, 
	step_name VARCHAR(255), 
	state TEXT NOT NULL, 
	error TEXT, 
	attempts INTEGER NOT NULL, 
	next_attempt_at DATETIME, 
	step_started_at DATETIME, 
	infra_id VARCHAR(255), 
	machine_uuid VARCHAR(64), 
	addresses TEXT NOT NULL, 
	marked_for_deletion BOOLEAN NOT NULL, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	version INTEGER NOT NULL, 
	lease_owner VARCHAR(255), 
	lease_until DATETIME, 
	PRIMARY KEY (id)
);
INSERT INTO "requests" VALUES('legacy-0','fake','pending','{"arch":"amd64","extensions":[],"id":"legacy-0","kernel_args":[],"labels":{"n":"0","role":"worker"},"meta_values":[],"overlay":null,"provider":"fake","provider_data":{},"secure_boot":false,"talos_version":"v1.11.5"}','8c44736991e820031758f8b8f4a86bf4182036382507bdee53e7639f66f45cad','fernet:gAAAAABrFNH2mEpVgDVrLkC5FRMW1nL2pv98h9m08Gv3BMih6gek45LH208S8YoMSXLJ0fnNnRh1K_ETYiD96ArOan6XV-LATbm63czyGRwKWUDzXSB5Lv09qcF-WEU5L-69lduoqGvZ','fernet:gAAAAABrFNH29nCxAPDcubY8Wo4vrho-DI30dO0zcHvg7U8q2TgYE1uW-KzPe8EHuek3Wrx9Cgr3Y8UE_UUdNnPEijfRCPt3UaLscmHMUSlw6e4eZ4nm2OsDWYx-hWcg9bXSk3o0kj1y','{"events_sink":"[fdae:41e4:649b:9303::1]:8090","kmsg_log":"tcp://[fdae:41e4:649b:9303::1]:8092","mode":"documents"}',0,NULL,'{}',NULL,0,NULL,NULL,NULL,NULL,'[]',0,'2026-12-06 03:09:42.900659','2026-12-06 03:09:42.900659',1,NULL,NULL);
INSERT INTO "requests" VALUES('legacy-1','fake','pending','{"arch":"amd64","extensions":[],"id":"legacy-1","kernel_args":[],"labels":{"n":"1","role":"worker"},"meta_values":[],"overlay":null,"provider":"fake","provider_data":{},"secure_boot":false,"talos_version":"v1.11.5"}','f06edfb690ee870f3b7c018d7187b1c1e7162c02aa063f508bc733f7e8b8e8f4','fernet:gAAAAABrFNH2hYlQcOjqxYuguFl6OnoGcubHRBImhhW2010SHAFQm-folvcZ_FR8WeepwrF6R2hYFf2_bqCfagimC5HCcaa9inb1GIQaoPZLGBMoUEysPbv2p58uRu8jMXvPrOrqUyWd','fernet:gAAAAABrFNH28pKZ4ZbIJWiRmaigqIYXJY5BFDOE7Ehbmam263dP9WKO8arBQucPcp0m08MAL7qULZVqdlZM78-ojBkhz157s8EQuMzmzPPuY8F-tVByCHvI2VCb1BUNDNHbdOFO5_ZU','{"events_sink":"[fdae:41e4:649b:9303::1]:8090","kmsg_log":"tcp://[fdae:41e4:649b:9303::1]:8092","mode":"documents"}',0,NULL,'{}',NULL,0,NULL,NULL,NULL,NULL,'[]',0,'2026-12-06 03:09:42.906340','2026-12-06 03:09:42.906340',1,NULL,NULL);
INSERT INTO "requests" VALUES('legacy-2','fake','deprovisioning','{"arch":"amd64","extensions":[],"id":"legacy-2","kernel_args":[],"labels":{"n":"2","role":"worker"},"meta_values":[],"overlay":null,"provider":"fake","provider_data":{},"secure_boot":false,"talos_version":"v1.11.5"}','2854517a1480c82df2d325817445f832be72cd777a9f14c044c46b93ecf7a135','fernet:gAAAAABrFNH21xbh2BClxwIt-q3iA9K5VAIaYfqFUepzHtn_i2ieQfKVTG3MdEM5ZHKaQqJ7es3fMkQD92pAtoB2JVn5hFn5zvoj1oftkTbELBy2dl-cNZC4kSMPwGI_eEz0_WN2rEqi','fernet:gAAAAABrFNH2tRyssEgJaw8w-IHUGkYUYMO_NQpueGTqNHcakOWDUxiNLXMy1wTxh6muBwcmZ9WtX5WtLF_hfCZFtd5C-5G91tDR243h2GCZJMJpiSCm0Ah1i3I44OWTwiKs4wFEgR_q','{"events_sink":"[fdae:41e4:649b:9303::1]:8090","kmsg_log":"tcp://[fdae:41e4:649b:9303::1]:8092","mode":"documents"}',0,NULL,'{}',NULL,0,NULL,NULL,NULL,NULL,'[]',0,'2026-12-06 03:09:42.907802','2026-12-06 03:09:42.909493',2,NULL,NULL);
CREATE TABLE schema_version (
	version INTEGER NOT NULL, 
	name VARCHAR(100) NOT NULL, 
	applied_at DATETIME NOT NULL, 
	PRIMARY KEY (version)
);
INSERT INTO "schema_version" VALUES(1,'initial schema','2026-12-06 03:09:42.888273');
CREATE INDEX ix_requests_stage ON requests (stage);
CREATE INDEX ix_requests_provider ON requests (provider);
CREATE INDEX ix_request_labels_key_value ON request_labels ("key", value);
CREATE INDEX ix_events_request_id ON events (request_id);
COMMIT;
